"""The working indicator shows only when an answer keeps the user waiting."""

from __future__ import annotations

import asyncio

from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention, message
from tests.handlers.conftest import Candor


def reactions(candor: Candor) -> list[str]:
    return [c.method for c in candor.slack.calls if c.method.startswith("reactions.")]


async def test_an_answer_that_starts_at_once_needs_no_indicator(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    candor.runtime.surface.indicator_delay = 5.0
    fake_llm.enqueue("Straight away.")

    await candor.send.event(app_mention("<@UBOT> quick one?"))
    await candor.idle()

    [answer] = candor.slack.messages("C1")
    assert answer.text == "Straight away."
    assert reactions(candor) == []  # the streaming text itself showed Candor at work


async def test_a_slow_answer_shows_the_reaction_and_clears_it_after_the_answer(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    candor.runtime.surface.indicator_delay = 0.05
    fake_llm.enqueue("Worth the wait.", delay=0.5)

    await candor.send.event(app_mention("<@UBOT> slow one?"))
    await candor.idle()

    [answer] = candor.slack.messages("C1")
    assert answer.text == "Worth the wait."
    assert reactions(candor) == ["reactions.add", "reactions.remove"]
    methods = [c.method for c in candor.slack.calls]
    assert methods.index("chat.stopStream") < methods.index("reactions.remove")


async def test_a_failure_after_the_wait_leaves_no_reaction_behind(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    candor.runtime.surface.indicator_delay = 0.05
    fake_llm.enqueue_error(500, times=3)  # retried with backoff, then one sentence

    await candor.send.event(app_mention("<@UBOT> will this fail?"))
    await candor.idle()

    [reply] = candor.slack.messages("C1")
    assert "language model" in reply.text
    assert reactions(candor) == ["reactions.add", "reactions.remove"]


async def test_a_slow_dm_shows_the_assistant_status_and_clears_it(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    candor.runtime.surface.indicator_delay = 0.05
    fake_llm.enqueue("Hello from the DM.", delay=0.5)
    dm = message("hello?", channel="D1", channel_type="im")

    await candor.send.event(dm)
    await candor.idle()

    statuses = [c.get("status") for c in candor.slack.calls_to("assistant.threads.setStatus")]
    assert statuses == ["is thinking…", ""]
    assert all(
        c.get("thread_ts") == dm["ts"] for c in candor.slack.calls_to("assistant.threads.setStatus")
    )
    assert reactions(candor) == []


async def test_time_queued_before_the_answer_starts_counts_toward_the_wait(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    # Other answers hold every place in preparation (`Admission`) for longer than the
    # indicator's delay: once in, this answer is fast, but the user has waited already.
    candor.runtime.surface.indicator_delay = 0.3
    fake_llm.enqueue("Fast once it started.")
    admission = candor.runtime.surface.admission
    for _ in range(admission.gate.capacity):
        await admission.gate.acquire()
    await candor.send.event(app_mention("<@UBOT> busy day?"))
    await asyncio.sleep(0.4)
    for _ in range(admission.gate.capacity):
        admission.gate.release()
    await candor.idle()

    [answer] = candor.slack.messages("C1")
    assert answer.text == "Fast once it started."
    assert reactions(candor) == ["reactions.add", "reactions.remove"]
