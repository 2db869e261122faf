"""Issue 13's behaviours (not timings): what lets one process carry hundreds of answers.

- every Web API call of a run goes over one shared HTTP session (kept-alive connections,
  seen by the fake Slack as the client's address), not a new connection per call;
- a Slack retry of an answered message stays silent (exactly once);
- user and channel lookups are asked once per burst and cached, for names and scope checks
  alike, and dropped by the events that change them (`channel_rename`, `user_change`,
  `member_joined_channel` / `member_left_channel`);
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention, event_callback, message
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
