"""The gateway's own reading of a streamed answer, against the fake server's wire formats.

`LLMGateway` parses the server-sent events itself (not through the SDK's stream of
pydantic chunks), so these tests play what real servers and proxies put on the wire:
keepalive comments, `event:`/`id:` fields, CRLF or CR line ends, JSON over several
`data:` lines, events split across network reads, an error sent after the 200, a stream
without usage, tool calls in pieces and logprobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.llm import (
    ChatRequest,
    ChatResult,
    LLMError,
    LLMGateway,
    LLMStreamCut,
    LLMTimeout,
    ToolCallRequest,
)
from bot.tokens import TokenCounter
from tests.fakes.openai_server import FakeOpenAIServer
from tests.llm_gateways import close_gateways  # noqa: F401 (fixture)
from tests.llm_gateways import gateway as shared_gateway

MESSAGES = [{"role": "user", "content": "Hi"}]
ANSWER = "Rotate the on-call: open the rota, swap the weeks, tell the channel."
REQUEST = ChatRequest(model="gpt-4o-mini", messages=MESSAGES)


pytestmark = pytest.mark.usefixtures("close_gateways")


def gateway(fake: FakeOpenAIServer, tmp_path: Path, *, timeout: float = 5) -> LLMGateway:
    return shared_gateway(fake, tmp_path, retries=0, timeout=timeout)


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def answer(llm: LLMGateway, request: ChatRequest = REQUEST) -> tuple[list[str], ChatResult]:
    """The deltas the surface was handed, and the result."""
    seen: list[str] = []

    async def on_delta(delta: str) -> None:
        seen.append(delta)

    return seen, await llm.complete(request, on_delta)


@pytest.mark.parametrize(
    "wire",
    [
        {"keepalive": True},
        {"line_end": "\r\n", "split_writes": 40},
        {"line_end": "\r", "split_writes": 40},
        {"multiline_data": True},
        {"split_writes": 16, "keepalive": True, "line_end": "\r\n", "multiline_data": True},
    ],
    ids=["keepalive-and-event-fields", "crlf-split-reads", "cr-split-reads", "multiline", "all"],
)
async def test_every_wire_format_gives_the_same_answer_usage_and_model(
    fake_llm: FakeOpenAIServer, tmp_path: Path, wire: dict[str, Any]
) -> None:
    fake_llm.enqueue(
        ANSWER,
        chunk_size=16,
        prompt_tokens=120,
        completion_tokens=17,
        cached_tokens=100,
        model="gpt-4o-mini-2024-07-18",
        service_tier="flex",
        **wire,
    )
    seen, result = await answer(gateway(fake_llm, tmp_path))
    assert seen == pieces(ANSWER, 16)  # every delta reached the surface, in order
    assert result.text == ANSWER
    assert result.finish_reason == "stop"
    assert result.model == "gpt-4o-mini-2024-07-18"
    usage = result.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (120, 17, 100)
    assert usage.estimated is False
    assert usage.service_tier == "flex"


async def test_an_error_event_before_any_text_is_one_sentence(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_llm.enqueue(ANSWER, error_after=0)
    with pytest.raises(LLMError) as info:
        await answer(gateway(fake_llm, tmp_path))
    assert type(info.value) is LLMError
    assert info.value.user_message == (
        "The language model failed to answer; please try again in a moment."
    )
    assert "crashed" not in info.value.user_message  # the server's words are for logs
    assert info.value.partial_text == ""


async def test_an_error_event_after_some_text_says_cut_off_and_keeps_the_text(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_llm.enqueue(ANSWER, chunk_size=16, error_after=2, keepalive=True)
    seen: list[str] = []

    async def on_delta(delta: str) -> None:
        seen.append(delta)

    with pytest.raises(LLMStreamCut) as info:
        await gateway(fake_llm, tmp_path).complete(REQUEST, on_delta)
    text = info.value.user_message
    assert "cut off" in text and text.count(".") == 1 and text.endswith(".")
    assert info.value.partial_text == ANSWER[:32] == "".join(seen)  # billed as an estimate


async def test_a_stream_without_usage_is_counted_on_the_whole_text(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    text = "word " * 30
    fake_llm.enqueue(text, chunk_size=5, usage=False)
    _, result = await answer(gateway(fake_llm, tmp_path))
    counter = TokenCounter(tmp_path)
    assert result.text == text
    assert result.usage.estimated is True
    # The whole answer counted once, not its pieces one by one ("word " alone is 2 tokens).
    assert result.usage.completion_tokens == counter.count(text, "gpt-4o-mini")
    assert result.usage.completion_tokens < sum(
        counter.count(piece, "gpt-4o-mini") for piece in pieces(text, 5)
    )
    assert result.usage.prompt_tokens == counter.count_messages(MESSAGES, "gpt-4o-mini")


async def test_tool_calls_streamed_in_pieces_are_joined(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_llm.enqueue_tool_calls(
        ("search_knowledge", {"query": "deploy freeze Friday"}),
        ("current_time", {}),
        split_writes=23,
    )
    seen, result = await answer(gateway(fake_llm, tmp_path))
    assert seen == [] and result.text == ""
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        ToolCallRequest(
            id="call_0_search_knowledge",
            name="search_knowledge",
            arguments='{"query": "deploy freeze Friday"}',
        ),
        ToolCallRequest(id="call_1_current_time", name="current_time", arguments="{}"),
    ]


async def test_streamed_logprobs_and_the_first_tokens_alternatives(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_llm.enqueue(
        "yes it is",
        chunk_size=3,
        logprobs=[-0.1, -0.2, -0.3],
        top_logprobs={"yes": -0.1, "no": -2.4},
        multiline_data=True,
    )
    request = ChatRequest(model="gpt-4o-mini", messages=MESSAGES, logprobs=True, top_logprobs=2)
    _, result = await answer(gateway(fake_llm, tmp_path), request)
    assert result.token_logprobs == [-0.1, -0.2, -0.3]
    assert result.first_top_logprobs == {"yes": -0.1, "no": -2.4}
    assert fake_llm.last["top_logprobs"] == 2


async def test_a_server_stalling_after_its_headers_is_a_timeout(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_llm.enqueue(ANSWER, trickle=1.0)  # headers sent, then nothing for 1 s
    with pytest.raises(LLMTimeout) as info:
        await answer(gateway(fake_llm, tmp_path, timeout=0.3))
    assert "took too long" in info.value.user_message


async def test_a_non_ascii_answer_past_max_tokens_is_stopped(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    # Three characters take up to nine UTF-8 bytes: the guard's byte bound must hold.
    fake_llm.enqueue("数据库" * 400, chunk_size=3, usage=False)
    request = ChatRequest(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
    _, result = await answer(gateway(fake_llm, tmp_path), request)
    assert result.finish_reason == "length"
    assert TokenCounter(tmp_path).count(result.text, "gpt-4o-mini") < 80
    assert result.usage.estimated is True


async def test_streamed_answers_reuse_one_connection(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    llm = gateway(fake_llm, tmp_path)
    for _ in range(3):
        fake_llm.enqueue(ANSWER, chunk_size=16)
        _, result = await answer(llm)
        assert result.text == ANSWER
    assert len(fake_llm.peers) == 3
    assert len(set(fake_llm.peers)) == 1  # read to the end, so the connection went back
