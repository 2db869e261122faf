"""A claimed message always ends: answered, or one sentence in its thread (issue 9, 2.4).

Regression: the settings lookup, the working indicator and the thread lookup ran after the
claim (or before it) outside any `try`, so a failure there left the claim `claimed`, the
user saw nothing, and Slack's retry was dropped as "already answered". A process that died
between claim and answer lost the message the same way; the sweep now reports it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select, text

from bot.clock import FixedClock
from bot.db import repo
from bot.db.models import ProcessedEventRow
from bot.deps import Deps
from bot.errors import StorageUnavailable
from bot.jobs.scheduler import STALE_CLAIM_SENTENCE, sweep_stale_claims
from handlers import render
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention, event_callback, message, new_ts
from tests.handlers.conftest import Candor

CHAT_METHODS = ("chat.postMessage", "chat.startStream", "chat.update", "chat.postEphemeral")


@asynccontextmanager
async def table_gone(deps: Deps, table: str) -> AsyncIterator[None]:
    """A real database failure: `table` is missing for a moment."""
    async with deps.db.engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_off"))
    try:
        yield
    finally:
        async with deps.db.engine.begin() as conn:
            await conn.execute(text(f"ALTER TABLE {table}_off RENAME TO {table}"))


async def claims(deps: Deps) -> dict[str, str]:
    async with deps.db.sessions() as session:
        rows = (await session.execute(select(ProcessedEventRow))).scalars().all()
    return {row.event_id: row.status for row in rows}


def posts(candor: Candor) -> list[Any]:
    return [c for c in candor.slack.calls if c.method in CHAT_METHODS]


async def test_settings_lookup_failing_after_the_claim_is_one_sentence_and_no_stuck_claim(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    mention = app_mention("<@UBOT> are you there?")
    async with table_gone(deps, "channel_settings"):
        await candor.send.event(event_callback(mention))
        await candor.idle()

    [post] = posts(candor)
    assert post.method == "chat.postMessage"
    assert post.get("channel") == "C1"
    assert post.get("thread_ts") == mention["ts"]
    assert post.get("text") == StorageUnavailable.user_message
    assert fake_llm.requests == []
    assert await claims(deps) == {f"msg:T1:C1:{mention['ts']}": "failed"}


async def test_slack_retry_of_a_message_already_told_to_try_again_stays_silent(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    # The documented choice: a failed claim is marked `failed`, not released. The user was
    # already told to try again, so a late retry of the same delivery neither answers after
    # the apology nor apologises twice; asking again (a new message) is answered.
    mention = app_mention("<@UBOT> are you there?")
    body = event_callback(mention)
    async with table_gone(deps, "channel_settings"):
        await candor.send.event(body)
        await candor.idle()

    await candor.send.event(body, retry_num=1)
    await candor.idle()
    assert len(posts(candor)) == 1
    assert fake_llm.requests == []

    fake_llm.enqueue("Yes, I am here.")
    await candor.send.event(app_mention("<@UBOT> are you there now?"))
    await candor.idle()
    assert [m.text for m in candor.slack.messages("C1")][-1] == "Yes, I am here."


async def test_indicator_failing_is_a_generic_sentence_never_the_exception(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slack's own errors are handled inside start_indicator; anything else (a bug, a
    # broken connection) cannot be produced by the fake server, hence the patch.
    async def broken(*_args: Any) -> None:
        raise RuntimeError("indicator exploded with xoxb-test-token")

    monkeypatch.setattr(candor.runtime.surface, "start_indicator", broken)
    mention = app_mention("<@UBOT> hello?")
    await candor.send.event(mention)
    await candor.idle()

    [post] = posts(candor)
    assert post.get("thread_ts") == mention["ts"]
    assert post.get("text") == render.GENERIC_FAILURE
    assert fake_llm.requests == []
    assert await claims(deps) == {f"msg:T1:C1:{mention['ts']}": "failed"}


async def test_thread_lookup_failing_on_a_follow_up_in_candors_thread_is_one_sentence(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("First answer.")
    first = app_mention("<@UBOT> what is X?")
    await candor.send.event(first)
    await candor.idle()

    follow = message("and Y?", channel="C1", channel_type="channel", thread_ts=first["ts"])
    async with table_gone(deps, "conversation_turns"):
        await candor.send.event(follow)
        await candor.idle()

    texts = [m.text for m in candor.slack.messages("C1", thread_ts=first["ts"])]
    assert texts == ["First answer.", StorageUnavailable.user_message]
    assert len(fake_llm.requests) == 1
    assert (await claims(deps))[f"msg:T1:C1:{follow['ts']}"] == "failed"


async def test_thread_lookup_failing_in_a_thread_candor_is_not_in_stays_silent(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    chatter = message("lunch?", channel="C1", channel_type="channel", thread_ts=new_ts())
    async with table_gone(deps, "conversation_turns"):
        await candor.send.event(chatter)
        await candor.idle()

    assert posts(candor) == []
    assert await claims(deps) == {}


async def test_claim_left_by_a_crash_is_reported_in_its_thread_once(
    candor: Candor, deps: Deps, clock: FixedClock
) -> None:
    # What a process that died between claim and answer leaves behind.
    crashed_ts, fresh_ts = new_ts(), new_ts()
    async with deps.db.write() as session:
        for ts in (crashed_ts, fresh_ts):
            if ts == fresh_ts:
                clock.advance(minutes=9)
            await repo.claim_event(
                session,
                event_id=f"msg:T1:C1:{ts}",
                kind="app_mention",
                now=clock.now(),
                workspace_id="T1",
                channel_id="C1",
                thread_ts=ts,
                user_id="U1",
            )
    clock.advance(minutes=2)  # the first is 11 minutes old, the second 2

    assert await sweep_stale_claims(deps) == 1
    assert await sweep_stale_claims(deps) == 0

    [post] = posts(candor)
    assert post.method == "chat.postMessage"
    assert (post.get("channel"), post.get("thread_ts")) == ("C1", crashed_ts)
    assert post.get("text") == STALE_CLAIM_SENTENCE
    assert await claims(deps) == {
        f"msg:T1:C1:{crashed_ts}": "failed",
        f"msg:T1:C1:{fresh_ts}": "claimed",
    }


async def test_an_answered_message_is_never_swept(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer, clock: FixedClock
) -> None:
    fake_llm.enqueue("Done.")
    mention = app_mention("<@UBOT> quick one")
    await candor.send.event(mention)
    await candor.idle()
    clock.advance(hours=1)

    assert await sweep_stale_claims(deps) == 0
    assert [m.text for m in candor.slack.messages("C1")] == ["Done."]
    assert await claims(deps) == {f"msg:T1:C1:{mention['ts']}": "answered"}
