"""Issue 13's behaviours (not timings): what lets one process carry hundreds of answers.

- every Web API call of a run goes over one shared HTTP session (kept-alive connections,
  seen by the fake Slack as the client's address), not a new connection per call;
- a Slack retry of an answered message stays silent (exactly once);
- with several workers on one database (`candor serve --workers N`), an event and its
  retry delivered to different workers at once are answered once; several workers on the
  embedded knowledge store are refused with one sentence;
- user and channel lookups are asked once per burst and cached, for names and scope checks
  alike, and dropped by the events that change them (`channel_rename`, `user_change`,
  `member_joined_channel` / `member_left_channel`);
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.cli.serve import serve
from bot.clock import FixedClock
from bot.db.engine import open_database
from bot.deps import Deps, build_deps
from bot.settings import ConfigError, Settings
from handlers.app import EVENTS_PATH, SlackRuntime
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import SlackEventSender, app_mention, event_callback, message
from tests.handlers.conftest import Candor


def system_message(fake_llm: FakeOpenAIServer, n: int = -1) -> str:
    return str(fake_llm.requests[n]["messages"][0]["content"])


async def slack_event(candor: Candor, event: dict[str, Any]) -> None:
    status, _ = await candor.send.event(event_callback(event))
    assert status == 200


async def test_every_slack_call_of_a_run_goes_over_one_kept_alive_connection(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    for n in range(3):
        fake_llm.enqueue(f"Answer {n}.")
        await candor.send.event(app_mention(f"<@UBOT> question {n}?", user=f"U{n}"))
        await candor.idle()

    calls = [c for c in candor.slack.calls if c.peer is not None]
    assert len(calls) >= 15  # lookups, reactions and the three streamed answers
    # One answer at a time: every call reuses the one open connection of the session.
    assert len({c.peer for c in calls}) == 1
    assert [m.text for m in candor.slack.messages("C1")] == ["Answer 0.", "Answer 1.", "Answer 2."]


async def test_a_retried_event_is_answered_once(candor: Candor, fake_llm: FakeOpenAIServer) -> None:
    fake_llm.enqueue("Once.")
    body = event_callback(app_mention("<@UBOT> once?"))
    await candor.send.event(body)
    await candor.send.event(body, retry_num=1)
    await candor.idle()

    assert [m.text for m in candor.slack.messages("C1")] == ["Once."]
    assert len(fake_llm.requests) == 1


async def test_a_burst_in_one_channel_asks_slack_once_per_user_and_channel(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    await asyncio.gather(
        *(candor.send.event(app_mention(f"<@UBOT> question {n}?")) for n in range(5))
    )
    await candor.idle()

    assert len(candor.slack.messages("C1")) == 5
    # Names for the prompt and the scope checks of retrieval share one lookup each.
    assert len(candor.slack.calls_to("users.info")) == 1
    assert len(candor.slack.calls_to("conversations.info")) == 1
    assert all("#c1" in system_message(fake_llm, n) for n in range(5))


async def test_a_renamed_channel_is_looked_up_again(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    await candor.send.event(app_mention("<@UBOT> first?"))
    await candor.idle()
    candor.slack.set_channel("C1", name="platform")
    await slack_event(
        candor, {"type": "channel_rename", "channel": {"id": "C1", "name": "platform"}}
    )
    await candor.send.event(app_mention("<@UBOT> second?"))
    await candor.idle()

    assert "#c1" in system_message(fake_llm, 0)
    assert "#platform" in system_message(fake_llm, 1)
    assert len(candor.slack.calls_to("conversations.info")) == 2


async def test_a_changed_user_is_looked_up_again(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    await candor.send.event(app_mention("<@UBOT> first?"))
    await candor.idle()
    candor.slack.set_user("U1", profile={"display_name": "Ada"})
    await slack_event(candor, {"type": "user_change", "user": {"id": "U1"}})
    await candor.send.event(app_mention("<@UBOT> second?"))
    await candor.send.event(app_mention("<@UBOT> third?"))
    await candor.idle()

    assert "Ada" not in system_message(fake_llm, 0)
    assert "Ada" in system_message(fake_llm, 1)
    assert len(candor.slack.calls_to("users.info")) == 2


async def test_joining_or_leaving_a_channel_refreshes_what_a_dm_may_read(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    await candor.send.event(message("what is new?", user="U1", channel="D1"))
    await candor.idle()
    await candor.send.event(message("and now?", user="U1", channel="D1"))
    await candor.idle()
    assert len(candor.slack.calls_to("users.conversations")) == 1  # cached

    await slack_event(candor, {"type": "member_joined_channel", "user": "U1", "channel": "C2"})
    await candor.send.event(message("after joining?", user="U1", channel="D1"))
    await candor.idle()
    await slack_event(candor, {"type": "member_left_channel", "user": "U1", "channel": "C2"})
    await candor.send.event(message("after leaving?", user="U1", channel="D1"))
    await candor.idle()

    assert len(candor.slack.calls_to("users.conversations")) == 3
    assert len(fake_llm.requests) == 4


async def test_an_event_and_its_retry_at_two_workers_on_one_database_are_answered_once(
    candor: Candor, deps: Deps, database_url: str, clock: FixedClock, fake_llm: FakeOpenAIServer
) -> None:
    # A second worker: its own process state (engine, pool, Slack runtime) on the same
    # database, as `candor serve --workers 2` runs it.
    other = await build_deps(
        deps.settings,
        clock=clock,
        db=open_database(database_url),
        migrate=False,
        with_knowledge=False,
    )
    second = SlackRuntime.build(other)
    port = await second.start_http(0, host="127.0.0.1")
    try:
        fake_llm.enqueue("Only once.")
        fake_llm.enqueue("A second answer must not happen.")
        body = event_callback(app_mention("<@UBOT> once across workers?"))
        to_second = SlackEventSender(f"http://127.0.0.1:{port}{EVENTS_PATH}")
        statuses = await asyncio.gather(candor.send.event(body), to_second.event(body, retry_num=1))
        await candor.idle()
        await second.surface.idle(timeout=10)
    finally:
        await second.shutdown(grace_seconds=5)
        await other.close()

    assert [status for status, _ in statuses] == [200, 200]
    assert [m.text for m in candor.slack.messages("C1")] == ["Only once."]
    assert len(fake_llm.requests) == 1


async def test_several_workers_on_the_embedded_knowledge_store_are_refused(
    settings: Settings,
) -> None:
    from pydantic import SecretStr

    settings.slack.bot_token = SecretStr("xoxb-1")
    settings.slack.signing_secret = SecretStr("s")
    with pytest.raises(ConfigError) as refused:
        await serve(settings, http=True, port=0, workers=2)
    assert "QDRANT_URL" in str(refused.value)
    assert "one process" in str(refused.value)


async def test_a_burst_rate_limited_on_stream_start_still_delivers_every_answer(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    # chat.startStream is Tier 2: under a burst Slack answers 429 with Retry-After. The
    # client waits and retries; past its retries the answer is posted and updated instead.
    candor.slack.rate_limit_next("chat.startStream", retry_after=0, times=12)
    mentions = [app_mention(f"<@UBOT> question {n}?", user=f"U{n}") for n in range(5)]
    for _ in range(5):
        fake_llm.enqueue("The answer, whole.")
    await asyncio.gather(*(candor.send.event(m) for m in mentions))
    await candor.idle()

    for mention in mentions:
        [answer] = [m for m in candor.slack.messages("C1") if m.thread_ts == mention["ts"]]
        assert answer.text.startswith("The answer, whole.")
    assert len(candor.slack.calls_to("chat.startStream")) >= 12
