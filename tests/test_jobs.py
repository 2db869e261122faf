"""Scheduled jobs, run directly with the injected clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select

from bot.clock import FixedClock
from bot.conversation import Turn
from bot.db import repo
from bot.db.models import ConversationTurnRow, ProcessedEventRow
from bot.deps import Deps
from bot.jobs.scheduler import (
    STALE_CLAIM_SENTENCE,
    THREAD_NOTICE,
    prune_events,
    prune_history,
    release_stale_holds,
    sweep_stale_claims,
)
from tests.fakes.openai_server import FakeOpenAIServer
from tests.spend.helpers import hold


async def count(deps: Deps, model: type) -> int:
    async with deps.db.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_old_event_claims_are_pruned_and_recent_ones_kept(
    deps: Deps, clock: FixedClock
) -> None:
    async with deps.db.write() as session:
        session.add(ProcessedEventRow(event_id="old", received_at=clock.now() - timedelta(days=8)))
        session.add(ProcessedEventRow(event_id="new", received_at=clock.now() - timedelta(days=1)))
    assert await prune_events(deps) == 1
    async with deps.db.write() as session:
        assert not await repo.claim_event(session, event_id="new", kind="x", now=clock.now())


async def test_history_retention_is_off_by_default_and_prunes_when_set(
    deps: Deps, fake_llm: FakeOpenAIServer, clock: FixedClock
) -> None:
    await deps.manager.reply(Turn("T1", "C1", "1.0", "U1", "hello", event_id="E1"))
    assert await prune_history(deps) == 0
    deps.settings.candor.history_retention_days = 30
    clock.advance(days=31)
    assert await prune_history(deps) == 2
    assert await count(deps, ConversationTurnRow) == 0


async def test_stale_holds_are_released(deps: Deps, clock: FixedClock) -> None:
    assert deps.spend is not None
    await hold(
        deps.spend,
        "E-crashed",
        user="U1",
        model="gpt-4o-mini",
        prompt_tokens=100,
        max_output_tokens=100,
    )
    assert await release_stale_holds(deps) == 0
    clock.advance(minutes=16)
    assert await release_stale_holds(deps) == 1


class RecordingNotice:
    """Stands in for the Slack surface's thread notice (the Slack path is tested in handlers)."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str]] = []

    async def __call__(self, *, channel: str, thread_ts: str, text: str) -> None:
        await asyncio.sleep(0)  # let a concurrent sweep interleave
        self.posted.append((channel, thread_ts, text))


async def claim(deps: Deps, ts: str, *, channel: str | None = "C1") -> None:
    async with deps.db.write() as session:
        await repo.claim_event(
            session,
            event_id=f"msg:T1:C1:{ts}",
            kind="app_mention",
            now=deps.clock.now(),
            workspace_id="T1",
            channel_id=channel,
            thread_ts=ts if channel else None,
            user_id="U1",
        )


async def test_two_replicas_sweeping_at_once_report_each_stuck_claim_once(
    deps: Deps, clock: FixedClock
) -> None:
    notice = RecordingNotice()
    deps.extras[THREAD_NOTICE] = notice
    await claim(deps, "1.1")
    await claim(deps, "2.2")
    clock.advance(minutes=deps.settings.candor.stale_claim_minutes + 1)

    counts = await asyncio.gather(sweep_stale_claims(deps), sweep_stale_claims(deps))

    assert sum(counts) == 2
    assert sorted(notice.posted) == [
        ("C1", "1.1", STALE_CLAIM_SENTENCE),
        ("C1", "2.2", STALE_CLAIM_SENTENCE),
    ]


async def test_stale_claim_threshold_is_a_setting(deps: Deps, clock: FixedClock) -> None:
    notice = RecordingNotice()
    deps.extras[THREAD_NOTICE] = notice
    deps.settings.candor.stale_claim_minutes = 3
    await claim(deps, "1.1")
    clock.advance(minutes=2)
    assert await sweep_stale_claims(deps) == 0
    clock.advance(minutes=2)
    assert await sweep_stale_claims(deps) == 1
    assert notice.posted == [("C1", "1.1", STALE_CLAIM_SENTENCE)]


async def test_sweep_without_a_surface_leaves_claims_for_one_that_has_it(
    deps: Deps, clock: FixedClock
) -> None:
    await claim(deps, "1.1")
    clock.advance(hours=1)
    assert await sweep_stale_claims(deps) == 0  # e.g. a CLI process: nowhere to tell the user
    notice = RecordingNotice()
    deps.extras[THREAD_NOTICE] = notice
    assert await sweep_stale_claims(deps) == 1
    assert notice.posted == [("C1", "1.1", STALE_CLAIM_SENTENCE)]


async def test_claim_from_before_threads_were_recorded_is_marked_failed_quietly(
    deps: Deps, clock: FixedClock
) -> None:
    notice = RecordingNotice()
    deps.extras[THREAD_NOTICE] = notice
    await claim(deps, "1.1", channel=None)
    clock.advance(hours=1)
    assert await sweep_stale_claims(deps) == 1
    assert notice.posted == []
    async with deps.db.sessions() as session:
        row = await session.get(ProcessedEventRow, "msg:T1:C1:1.1")
    assert row is not None and row.status == "failed"
