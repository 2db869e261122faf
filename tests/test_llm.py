"""The LLM gateway against the fake server: retries, typed errors, usage, logprobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai import AsyncOpenAI

from bot.llm import (
    ChatRequest,
    LLMAuthFailed,
    LLMContextTooLong,
    LLMError,
    LLMGateway,
    LLMModelNotFound,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
)
from bot.tokens import TokenCounter
from tests.fakes.openai_server import FakeOpenAIServer

MESSAGES = [{"role": "user", "content": "Hi"}]


def gateway(
    fake: FakeOpenAIServer, tmp_path: Path, *, retries: int = 2, timeout: float = 5
) -> LLMGateway:
    client = AsyncOpenAI(
        base_url=fake.url, api_key="sk-secret-123", max_retries=retries, timeout=timeout
    )
    return LLMGateway(client, TokenCounter(tmp_path))


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
