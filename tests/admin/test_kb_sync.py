"""`/candor kb ingest #c --sync`: the `kb_sync` job reads only the messages posted since the
last sync (`conversations.history` with `oldest=`), `kb sources` says when, `kb unsync`
stops it. Through the real Slack app, the fake Slack server and the injected clock."""

from __future__ import annotations

from datetime import timedelta

from bot.clock import FixedClock
from bot.deps import Deps
from bot.jobs.runner import JobRunner
from bot.jobs.sync import list_syncs, slack_ts
from bot.kb import ScopedKnowledge
from tests.admin.conftest import AdminHarness
from tests.conftest import START

CHANNEL = "C12345678"


def message(when_offset: timedelta, user: str, text: str) -> dict[str, str]:
    return {"type": "message", "user": user, "ts": slack_ts(START + when_offset), "text": text}


async def sources(deps: Deps) -> dict[str, int]:
    assert isinstance(deps.knowledge, ScopedKnowledge)
    return {s.source: s.chunks for s in await deps.knowledge.kb.list_sources()}


async def texts_of(deps: Deps, source: str) -> str:
    assert isinstance(deps.knowledge, ScopedKnowledge)
    store = deps.knowledge.kb.store
    texts = [
        str(payload.get("text"))
        async for batch in store.scroll_payloads(100)
        for _, payload in batch
        if payload.get("source") == source
    ]
    return " ".join(texts)


async def kb_sync(deps: Deps) -> str:
    outcome = await JobRunner(deps, holder="replica-a").run_now("kb_sync")
    assert outcome.ok, outcome.error
    return outcome.result


async def test_a_synced_channel_gets_only_the_messages_posted_since_the_last_sync(
    harness: AdminHarness, deps: Deps, clock: FixedClock
) -> None:
    old = [
        message(timedelta(hours=-2), "U8", "The staging database lives in eu-west-1."),
        message(timedelta(days=-1), "U7", "The on-call rotation swaps every Tuesday at noon."),
    ]
    harness.slack.set_history(CHANNEL, old)

    reply = await harness.command(f"kb ingest <#{CHANNEL}|general> --sync")

    assert f"Learned <#{CHANNEL}> (public)" in reply and "keep it in sync" in reply
    listing = await harness.command("kb sources")
    assert f"`slack:{CHANNEL}`" in listing and "synced 2026-11-26 09:00 UTC" in listing
    assert f"<#{CHANNEL}> into `channel:{CHANNEL}`: synced 2026-11-26 09:00 UTC" in listing

    new = message(timedelta(minutes=30), "U9", "Deploys freeze from December 20th.")
    harness.slack.set_history(CHANNEL, [new, *old])
    clock.advance(hours=1)

    assert await kb_sync(deps) == "1 sources synced, 0 failed"

    history = harness.slack.calls_to("conversations.history")
    assert history[-1].get("oldest") == slack_ts(START)
    incremental = f"slack:{CHANNEL}@{slack_ts(START)}"
    assert set(await sources(deps)) == {f"slack:{CHANNEL}", incremental}
    added = await texts_of(deps, incremental)
    assert "Deploys freeze from December 20th." in added
    assert "eu-west-1" not in added and "on-call" not in added  # old messages not read again
    [synced] = await list_syncs(deps.db)
    assert synced.last_synced_at == START + timedelta(hours=1)
    assert synced.last_error is None

    # Nothing new since: the next sync asks from its own start and writes nothing.
    clock.advance(hours=1)
    assert await kb_sync(deps) == "1 sources synced, 0 failed"
    assert harness.slack.calls_to("conversations.history")[-1].get("oldest") == slack_ts(
        START + timedelta(hours=1)
    )
    assert len(await sources(deps)) == 2
    [synced] = await list_syncs(deps.db)
    assert synced.last_result == "no new messages"

    # A full ingest folds the incremental source back into the channel's one source.
    await harness.command(f"kb ingest <#{CHANNEL}|general>")
    assert set(await sources(deps)) == {f"slack:{CHANNEL}"}
    assert "December 20th" in await texts_of(deps, f"slack:{CHANNEL}")


async def test_unsync_stops_the_sync_and_keeps_the_knowledge(
    harness: AdminHarness, deps: Deps, clock: FixedClock
) -> None:
    harness.slack.set_history(
        CHANNEL, [message(timedelta(hours=-1), "U7", "Lunch is at noon on Fridays.")]
    )
    await harness.command(f"kb ingest <#{CHANNEL}|general> --sync")
    calls = len(harness.slack.calls_to("conversations.history"))

    reply = await harness.command(f"kb unsync <#{CHANNEL}|general>")

    assert f"Stopped syncing <#{CHANNEL}>" in reply
    clock.advance(hours=1)
    assert await kb_sync(deps) == "0 sources synced, 0 failed"
    assert len(harness.slack.calls_to("conversations.history")) == calls
    assert f"slack:{CHANNEL}" in await sources(deps)
    assert "is not kept in sync" in await harness.command(f"kb unsync <#{CHANNEL}|general>")
    assert "kb unsync" in await harness.command("audit")
