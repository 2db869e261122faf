"""The LLM gateway against the fake server: retries, typed errors, usage, logprobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import DeliveryFailed
from bot.llm import (
    ChatRequest,
    LLMAuthFailed,
    LLMContextTooLong,
    LLMError,
    LLMModelNotFound,
    LLMRateLimited,
    LLMStreamCut,
    LLMTimeout,
    LLMUnavailable,
)
from tests.fakes.openai_server import FakeOpenAIServer
from tests.llm_gateways import close_gateways, gateway  # noqa: F401 (fixture)

MESSAGES = [{"role": "user", "content": "Hi"}]


pytestmark = pytest.mark.usefixtures("close_gateways")


async def test_429_and_500_are_retried_then_succeed(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_llm.enqueue_error(429)
    fake_llm.enqueue_error(500)
    fake_llm.enqueue("Recovered.")
    result = await gateway(fake_llm, tmp_path).complete(
        ChatRequest(model="gpt-4o-mini", messages=MESSAGES)
    )
    assert result.text == "Recovered."
    assert len(fake_llm.requests) == 3


@pytest.mark.parametrize(
    ("status", "code", "error", "sentence"),
    [
        (429, None, LLMRateLimited, "rate limited"),
        (500, None, LLMUnavailable, "unavailable"),
        (401, None, LLMAuthFailed, "OPENAI_API_KEY"),
        (404, None, LLMModelNotFound, "not available"),
        (400, "context_length_exceeded", LLMContextTooLong, "too long"),
    ],
)
async def test_failures_become_one_clear_sentence(
    fake_llm: FakeOpenAIServer,
    tmp_path: Path,
    status: int,
    code: str | None,
    error: type[LLMError],
    sentence: str,
) -> None:
    message = "This model's maximum context length is 8192 tokens" if code else "nope"
    fake_llm.enqueue_error(status, code=code, message=message, times=3)
    with pytest.raises(error) as info:
        await gateway(fake_llm, tmp_path).complete(
            ChatRequest(model="gpt-4o-mini", messages=MESSAGES)
        )
    text = info.value.user_message
    assert sentence in text
    assert text.count(".") == 1 and text.endswith(".")
    assert "sk-secret-123" not in text and "Traceback" not in text


async def test_timeout_is_typed(fake_llm: FakeOpenAIServer, tmp_path: Path) -> None:
    fake_llm.enqueue("slow", delay=2.0)
    with pytest.raises(LLMTimeout):
        await gateway(fake_llm, tmp_path, retries=0, timeout=0.3).complete(
            ChatRequest(model="gpt-4o-mini", messages=MESSAGES)
        )


async def test_streaming_usage_cached_tokens_and_logprobs(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_llm.enqueue(
        "Twelve tokens of text here.", prompt_tokens=120, completion_tokens=12, cached_tokens=100
    )
    result = await gateway(fake_llm, tmp_path).complete(
        ChatRequest(model="gpt-4o-mini", messages=MESSAGES, logprobs=True)
    )
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (120, 12)
    assert result.usage.cached_tokens == 100
    assert result.usage.estimated is False
    assert result.token_logprobs and all(lp == -0.05 for lp in result.token_logprobs)
    assert fake_llm.last["logprobs"] is True


async def test_non_streaming_call(fake_llm: FakeOpenAIServer, tmp_path: Path) -> None:
    fake_llm.enqueue("Whole answer.", prompt_tokens=9, completion_tokens=3)
    result = await gateway(fake_llm, tmp_path).complete(
        ChatRequest(model="gpt-4o-mini", messages=MESSAGES, stream=False, temperature=0.2)
    )
    assert result.text == "Whole answer."
    assert "stream" not in fake_llm.last
    assert fake_llm.last["temperature"] == 0.2
    assert result.usage.total_tokens == 12


async def test_trickling_server_is_stopped_by_the_total_deadline(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    # One piece every 0.3 s never trips the 1 s per-read timeout; 20 pieces would take 6 s.
    fake_llm.enqueue("ab" * 20, chunk_size=2, trickle=0.3)
    with pytest.raises(LLMTimeout) as info:
        await gateway(fake_llm, tmp_path, timeout=1).complete(
            ChatRequest(model="gpt-4o-mini", messages=MESSAGES, deadline_seconds=1.0)
        )
    assert info.value.user_message == (
        "The language model did not finish within 1 seconds, so Candor stopped waiting; "
        "please try again or ask for a shorter answer."
    )
    assert info.value.partial_text.startswith("ab")  # what arrived, for billing
    assert len(info.value.partial_text) < 40


async def test_stream_cut_by_the_server_says_cut_off_and_keeps_the_partial_text(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_llm.enqueue("The first part. The second part never arrives.", chunk_size=8, cut_after=2)
    seen: list[str] = []

    async def on_delta(delta: str) -> None:
        seen.append(delta)

    with pytest.raises(LLMStreamCut) as info:
        await gateway(fake_llm, tmp_path).complete(
            ChatRequest(model="gpt-4o-mini", messages=MESSAGES), on_delta
        )
    assert "cut off" in info.value.user_message
    assert "unavailable" not in info.value.user_message
    assert info.value.partial_text == "The first part. " == "".join(seen)
    assert len(fake_llm.requests) == 1  # a cut answer is not silently asked again


async def test_a_failing_delta_callback_is_not_blamed_on_the_model(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_llm.enqueue("Some answer that Slack will not take.", chunk_size=4)

    async def on_delta(delta: str) -> None:
        raise DeliveryFailed(code="message_not_found")

    with pytest.raises(DeliveryFailed) as info:
        await gateway(fake_llm, tmp_path).complete(
            ChatRequest(model="gpt-4o-mini", messages=MESSAGES), on_delta
        )
    assert not isinstance(info.value, LLMError)
    assert info.value.code == "message_not_found"


@pytest.mark.parametrize(
    ("model", "field"), [("gpt-4o-mini", "max_tokens"), ("o3-mini", "max_completion_tokens")]
)
async def test_the_answer_length_limit_is_sent(
    fake_llm: FakeOpenAIServer, tmp_path: Path, model: str, field: str
) -> None:
    await gateway(fake_llm, tmp_path).complete(
        ChatRequest(model=model, messages=MESSAGES, max_tokens=77)
    )
    assert fake_llm.last[field] == 77
    [other] = {"max_tokens", "max_completion_tokens"} - {field}
    assert other not in fake_llm.last


async def test_a_server_ignoring_max_tokens_is_stopped_at_the_limit(
    fake_llm: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_llm.enqueue("word " * 400, chunk_size=5)  # ~400 tokens, one per piece
    result = await gateway(fake_llm, tmp_path).complete(
        ChatRequest(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
    )
    assert result.finish_reason == "length"
    assert len(result.text.split()) < 60
    assert result.usage.estimated is True
