"""Scheduled jobs, run directly with the injected clock."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from bot.clock import FixedClock
from bot.conversation import Turn
from bot.db import repo
from bot.db.models import ConversationTurnRow, ProcessedEventRow
from bot.deps import Deps
from bot.jobs import build_scheduler, prune_events, prune_history, release_stale_holds
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


def test_scheduler_has_every_job(deps: Deps) -> None:
    ids = {job.id for job in build_scheduler(deps).get_jobs()}
    assert ids == {"release_stale_holds", "prune_events", "prune_history"}
