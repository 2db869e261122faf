"""`Reply` against the fake Slack: how an interrupted or failed answer ends."""

from __future__ import annotations

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import Answer
from bot.errors import DeliveryFailed
from bot.llm import LLMError, Usage
from handlers.reply import Reply, StreamPacer
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


def answer_of(text: str) -> Answer:
    return Answer(text=text, model="gpt-4o-mini", usage=Usage(10, 5), timings={})


class Waits:
    """Records the waits `Reply` asks for instead of sleeping (no timed assertions)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


async def test_rate_limited_stream_waits_retry_after_buffers_and_delivers_all(
    slack: FakeSlackServer,
) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
    waits = Waits()
    reply = Reply(
        client, channel="C1", thread_ts="1.000100", team_id="T1", user_id="U1", sleep=waits
    )
    reply.STREAM_EVERY = (0.0, 1)
    slack.rate_limit_next("chat.appendStream", retry_after=2)
    slack.rate_limit_next("chat.stopStream", retry_after=2, times=2)

    for word in ("One ", "two ", "three ", "four."):
        await reply.delta(word)
    await reply.finish(answer_of("One two three four."))

    [message] = slack.messages("C1")
    assert message.text == "One two three four."
    assert not message.streaming
    assert len(waits.seconds) == 3 and all(1 < s <= 2 for s in waits.seconds)
    # While Slack asked to wait, later deltas were buffered, not sent one by one.
    assert len(slack.calls_to("chat.appendStream")) == 1


async def test_stream_failing_for_good_is_finished_with_chat_update(
    slack: FakeSlackServer,
) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
    reply = Reply(
        client, channel="C1", thread_ts="1.000100", team_id="T1", user_id="U1", sleep=Waits()
    )
    reply.STREAM_EVERY = (0.0, 1)
    await reply.delta("Half of it, ")
    slack.fail_next("chat.appendStream", "message_not_in_streaming_state")

    await reply.delta("and the rest.")
    await reply.finish(answer_of("Half of it, and the rest."))

    [message] = slack.messages("C1")
    assert message.text.startswith("Half of it, and the rest.\n\n_gpt-4o-mini · 15 tokens")
    assert slack.calls_to("chat.update")


async def test_stream_message_deleted_mid_answer_is_posted_anew(slack: FakeSlackServer) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
    reply = Reply(client, channel="C1", thread_ts="1.000100", team_id="T1", user_id="U1")
    reply.STREAM_EVERY = (0.0, 1)
    slack.delete_message_before("chat.appendStream", call=2)

    for word in ("Deleted ", "while ", "streaming."):
        await reply.delta(word)
    await reply.finish(answer_of("Deleted while streaming."))

    [message] = slack.messages("C1")
    assert message.text.startswith("Deleted while streaming.")
    assert message.thread_ts == "1.000100"


async def test_finish_delivers_what_the_stream_never_got(slack: FakeSlackServer) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
    reply = Reply(client, channel="C1", thread_ts="1.000100", team_id="T1", user_id="U1")
    reply.STREAM_EVERY = (0.0, 1)
    slack.fail_next("chat.startStream", "ratelimited")  # no stream, and then:
    slack.fail_next("chat.postMessage", "fatal_error")

    with pytest.raises(DeliveryFailed) as info:
        await reply.delta("The start, ")
    assert info.value.code == "fatal_error"
    assert not isinstance(info.value, LLMError)
    await reply.finish(answer_of("The start, and everything after it."))

    [message] = slack.messages("C1")
    assert message.text.startswith("The start, and everything after it.")


async def test_a_ping_split_across_deltas_is_never_sent_live(slack: FakeSlackServer) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
    reply = Reply(client, channel="C1", thread_ts="1.000100", team_id="T1", user_id="U1")
    reply.STREAM_EVERY = (0.0, 1)

    for piece in ("Ping <", "!chan", "nel> and @", "he", "re now"):
        await reply.delta(piece)
    await reply.finish(answer_of("Ping <!channel> and @here now"))

    for call in slack.calls:
        body = str(call.body)
        assert "<!" not in body and "@here" not in body and "@channel" not in body
    [message] = slack.messages("C1")
    assert message.text.replace("\u200b", "") == "Ping @channel and @here now"


async def test_the_first_text_opens_the_stream_so_a_short_answer_needs_no_append(
    slack: FakeSlackServer,
) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
    reply = Reply(client, channel="C1", thread_ts="1.000100", team_id="T1", user_id="U1")

    await reply.delta("Short and sweet.")
    await reply.finish(answer_of("Short and sweet."))

    [start] = slack.calls_to("chat.startStream")
    assert start.get("markdown_text") == "Short and sweet."
    assert slack.calls_to("chat.appendStream") == []
    [message] = slack.messages("C1")
    assert message.text == "Short and sweet."
    assert not message.streaming


async def test_with_many_answers_streaming_each_appends_less_often(
    slack: FakeSlackServer,
) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
    pacer = StreamPacer(appends_per_second=0.5)  # two streams: one append per 4 s each

    def new_reply(thread_ts: str) -> Reply:
        reply = Reply(
            client, channel="C1", thread_ts=thread_ts, team_id="T1", user_id="U1", pacer=pacer
        )
        reply.STREAM_EVERY = (0.0, 1)  # alone, every delta would be appended at once
        return reply

    other, mine = new_reply("1.000100"), new_reply("2.000200")
    await other.delta("Another answer is streaming. ")
    words = ["Under ", "load ", "the ", "text ", "arrives ", "in ", "larger ", "steps."]
    for word in words:
        await mine.delta(word)

    assert pacer.streaming == 2
    # Only the first word opened the stream; the rest waits for the paced interval.
    assert slack.calls_to("chat.appendStream") == []
    await mine.finish(answer_of("".join(words)))
    await other.finish(answer_of("Another answer is streaming. "))

    assert pacer.streaming == 0  # finished answers no longer slow the others down
    texts = {m.thread_ts: m.text for m in slack.messages("C1")}
    assert texts["2.000200"] == "".join(words)
    assert texts["1.000100"] == "Another answer is streaming. "

    alone = new_reply("3.000300")
    alone.STREAM_EVERY = (2.0, 1)  # 1 stream / 0.5 per s: the pacer adds no wait
    for word in words:
        await alone.delta(word)
    await alone.finish(answer_of("".join(words)))
    assert len(slack.calls_to("chat.appendStream")) == len(words) - 1
