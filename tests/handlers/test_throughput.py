"""Issue 13's behaviours (not timings): what lets one process carry hundreds of answers.

- every Web API call of a run goes over one shared HTTP session (kept-alive connections,
  seen by the fake Slack as the client's address), not a new connection per call;
- a claim, the channel's settings and the thread's history are read in one transaction,
  and a Slack retry of an answered message stays silent (exactly once);
"""

from __future__ import annotations

from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention, event_callback
from tests.handlers.conftest import Candor


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
