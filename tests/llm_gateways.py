"""LLM gateways against the fake OpenAI server, closed after each test that opens one.

A test module takes them with `from tests.llm_gateways import close_gateways, gateway`
and `pytestmark = pytest.mark.usefixtures("close_gateways")`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from bot.llm import LLMGateway
from bot.tokens import TokenCounter
from tests.fakes.openai_server import FakeOpenAIServer

OPENED: list[LLMGateway] = []


def gateway(
    fake: FakeOpenAIServer, tmp_path: Path, *, retries: int = 2, timeout: float = 5
) -> LLMGateway:
    """A gateway to `fake` with a key the tests look for in errors and logs."""
    client = AsyncOpenAI(
        base_url=fake.url, api_key="sk-secret-123", max_retries=retries, timeout=timeout
    )
    OPENED.append(LLMGateway(client, TokenCounter(tmp_path)))
    return OPENED[-1]


@pytest.fixture
async def close_gateways() -> AsyncIterator[None]:
    yield
    while OPENED:
        llm = OPENED.pop()
        await llm.aclose()
        await llm.client.close()
