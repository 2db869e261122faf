"""`Reply` against the fake Slack: how an interrupted or failed answer ends."""

from __future__ import annotations

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from handlers.slack_io import Reply
from tests.fakes.slack_server import FakeSlackServer


@pytest.mark.parametrize("stream", [True, False])
async def test_cut_off_mid_answer_keeps_the_text_and_says_why(
    slack: FakeSlackServer, stream: bool
) -> None:
    if not stream:
        slack.refuse_streaming()
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
    reply = Reply(client, channel="C1", thread_ts="1.000100", team_id="T1", user_id="U1")
    reply.STREAM_EVERY = reply.UPDATE_EVERY = (0.0, 1)  # write every delta

    await reply.delta("The first half of the answer")
    await reply.cut_off()

    [message] = slack.messages("C1")
    assert (
        message.text == "The first half of the answer\n\n…(answer cut off: Candor was restarting)"
    )
    assert message.thread_ts == "1.000100"
    assert not message.streaming


async def test_failure_after_partial_text_appends_the_sentence(slack: FakeSlackServer) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
    reply = Reply(client, channel="C1", thread_ts="1.000100", team_id="T1", user_id="U1")
    reply.STREAM_EVERY = (0.0, 1)

    await reply.delta("Partial")
    await reply.fail("The language model failed to answer; please try again in a moment.")

    [message] = slack.messages("C1")
    assert message.text.endswith(
        "Partial\n\nThe language model failed to answer; please try again in a moment."
    )
