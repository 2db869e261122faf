"""Streamed answers over the gateway's own HTTP session, against the fake server.

`LLMGateway` streams over one `aiohttp` session built from the `AsyncOpenAI` client
(`bot.llm_http`), not through the SDK. These tests pin what that must keep: the request
on the wire is the SDK's, connections are shared across answers, retries honour what
the server asks, a refused connection is one sentence at once, and the API key shows up
nowhere but in the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from bot.clock import FixedClock
from bot.deps import build_llm
from bot.llm import (
    ChatRequest,
    LLMAuthFailed,
    LLMError,
    LLMGateway,
    LLMRateLimited,
    LLMUnavailable,
    LLMUnreachable,
)
from bot.llm_http import FailFast
from bot.settings import load_settings
from bot.tokens import TokenCounter
from tests.fakes.openai_server import FakeOpenAIServer
from tests.test_config_errors import assert_one_sentence, closed_port

KEY = "sk-secret-123"
MESSAGES = [{"role": "user", "content": "Hi"}]
REQUEST = ChatRequest(model="gpt-4o-mini", messages=MESSAGES)
NOW = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)

Build = Callable[..., LLMGateway]


class Waits:
    """An injected `sleep` that records how long the gateway asked to wait, and returns."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
def waits() -> Waits:
    return Waits()


@pytest.fixture
async def build(tmp_path: Path, waits: Waits) -> AsyncIterator[Build]:
    """Makes gateways that wait through `waits`; closes them (session and client) after."""
    made: list[LLMGateway] = []

    def make(
        url: str,
        *,
        retries: int = 2,
        fail_fast: FailFast | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        **client: Any,
    ) -> LLMGateway:
        openai = AsyncOpenAI(
            base_url=url, api_key=client.pop("api_key", KEY), max_retries=retries, **client
        )
        made.append(
            LLMGateway(
                openai,
                TokenCounter(tmp_path),
                fail_fast=fail_fast,
                sleep=sleep or waits,
                clock=FixedClock(NOW),
            )
        )
        return made[-1]

    yield make
    for llm in made:
        await llm.aclose()
        await llm.client.close()


def lowered(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


async def test_the_request_on_the_wire_is_the_one_the_sdk_sends(
    fake_llm: FakeOpenAIServer, build: Build
) -> None:
    llm = build(
        fake_llm.url,
        timeout=7.5,
        organization="org-candor",
        project="proj-candor",
        default_headers={"X-Team": "platform"},
        default_query={"api-version": "2024-10-21"},
    )
    request = ChatRequest(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Ça va?"},
        ],
        temperature=0.2,
        logprobs=True,
        top_logprobs=2,
        tools=[{"type": "function", "function": {"name": "now", "parameters": {}}}],
    )
    params = llm.build_params(request)
    async with llm.client.chat.completions.with_streaming_response.create(**params) as sdk:
        await sdk.read()
    await llm.complete(request)

    by_sdk, ours = fake_llm.requests
    assert ours == by_sdk  # the same JSON body
    assert fake_llm.queries == ["api-version=2024-10-21"] * 2
    sdk_headers, our_headers = (lowered(h) for h in fake_llm.headers)
    assert our_headers["authorization"] == f"Bearer {KEY}"
    assert our_headers["openai-organization"] == "org-candor"
    assert our_headers["openai-project"] == "proj-candor"
    assert our_headers["x-team"] == "platform"
    assert our_headers["x-stainless-read-timeout"] == "7.5"
    # Everything else the SDK sends too, but its internal marker and a default header.
    left_out = {"x-stainless-raw-response", "connection"}
    assert {k: v for k, v in sdk_headers.items() if k not in left_out} == our_headers


async def test_answers_share_one_pool_of_connections(
    fake_llm: FakeOpenAIServer, build: Build
) -> None:
    llm = build(fake_llm.url)
    fake_llm.delay = 0.2  # four answers at once hold four connections

    async def four() -> set[Any]:
        start = len(fake_llm.peers)
        results = await asyncio.gather(*(llm.complete(REQUEST) for _ in range(4)))
        assert all(r.text == fake_llm.default_text for r in results)
        return set(fake_llm.peers[start:])

    first = await four()  # the first four also race to open the session
    second = await four()
    assert len(first) == 4
    assert second == first  # the same four connections, reused


@pytest.mark.parametrize(
    ("headers", "waited"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"Retry-After": format_datetime(NOW + timedelta(seconds=30), usegmt=True)}, 30.0),
    ],
    ids=["seconds", "milliseconds-first", "http-date"],
)
async def test_a_429_waits_as_long_as_the_server_asks_then_succeeds(
    fake_llm: FakeOpenAIServer, build: Build, waits: Waits, headers: dict[str, str], waited: float
) -> None:
    fake_llm.enqueue_error(429, headers=headers)
    fake_llm.enqueue("After the wait.")
    result = await build(fake_llm.url).complete(REQUEST)
    assert result.text == "After the wait."
    assert waits.seconds == [waited]
    assert [h["x-stainless-retry-count"] for h in map(lowered, fake_llm.headers)] == ["0", "1"]


async def test_without_retry_after_the_waits_back_off(
    fake_llm: FakeOpenAIServer, build: Build, waits: Waits
) -> None:
    fake_llm.enqueue_error(500, headers={}, times=3)
    fake_llm.enqueue("Third time lucky.")
    result = await build(fake_llm.url, retries=3).complete(REQUEST)
    assert result.text == "Third time lucky."
    # The SDK's backoff: 0.5 s doubling, each cut by up to a quarter at random.
    bases = (0.5, 1.0, 2.0)
    assert len(waits.seconds) == 3
    assert all(0.75 * b <= w <= b for w, b in zip(waits.seconds, bases, strict=True))


@pytest.mark.parametrize(
    "headers", [{"Retry-After": "600"}, {"x-should-retry": "false"}], ids=["too-long", "told-not"]
)
async def test_a_429_the_server_says_not_to_retry_soon_is_rate_limited_at_once(
    fake_llm: FakeOpenAIServer, build: Build, waits: Waits, headers: dict[str, str]
) -> None:
    fake_llm.enqueue_error(429, headers=headers, times=3)
    with pytest.raises(LLMRateLimited) as info:
        await build(fake_llm.url).complete(REQUEST)
    assert len(fake_llm.requests) == 1 and waits.seconds == []
    assert "rate limited" in info.value.user_message


async def test_no_quota_left_is_unavailable_not_rate_limited(
    fake_llm: FakeOpenAIServer, build: Build
) -> None:
    fake_llm.enqueue_error(429, code="insufficient_quota", message="You exceeded your quota.")
    with pytest.raises(LLMUnavailable) as info:
        await build(fake_llm.url, retries=0).complete(REQUEST)
    assert type(info.value) is LLMUnavailable
    assert "unavailable" in info.value.user_message


async def test_a_refused_configured_base_url_is_one_sentence_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    # As `bot.deps` builds it: OPENAI_BASE_URL set, 3 retries allowed, nothing listening.
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "3")
    llm = build_llm(load_settings(None), TokenCounter(tmp_path), FixedClock(NOW))
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(LLMUnreachable) as info:
            await llm.complete(REQUEST)
    finally:
        await llm.client.close()
    assert_one_sentence(info.value.user_message, "OPENAI_BASE_URL")
    assert KEY not in info.value.user_message
    assert "Retrying" not in caplog.text  # not retried: the server is not running


async def test_a_refused_openai_endpoint_is_retried_then_says_check_the_network(
    build: Build, waits: Waits
) -> None:
    llm = build(f"http://127.0.0.1:{closed_port()}/v1", retries=2, fail_fast=FailFast(False))
    with pytest.raises(LLMUnreachable) as info:
        await llm.complete(REQUEST)
    assert len(waits.seconds) == 2
    assert_one_sentence(info.value.user_message, "OPENAI_BASE_URL", "network")


async def test_without_fail_fast_a_refused_connection_is_unavailable_after_the_retries(
    build: Build, waits: Waits
) -> None:
    llm = build(f"http://127.0.0.1:{closed_port()}/v1", retries=1)
    with pytest.raises(LLMUnavailable):
        await llm.complete(REQUEST)
    assert len(waits.seconds) == 1


@pytest.mark.parametrize("status", [401, 500])
async def test_the_api_key_is_in_no_error_and_no_log(
    fake_llm: FakeOpenAIServer, build: Build, caplog: Any, status: int
) -> None:
    # Servers echo the key they were given, in error bodies and in-stream errors alike.
    fake_llm.enqueue_error(status, message=f"Incorrect API key provided: {KEY}.", times=3)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LLMError) as info:
        await build(fake_llm.url).complete(REQUEST)
    assert isinstance(info.value, LLMAuthFailed if status == 401 else LLMUnavailable)
    seen = [info.value.user_message, str(info.value), repr(info.value), info.value.detail]
    assert all(KEY not in text for text in seen)
    assert KEY not in caplog.text


async def test_a_client_whose_key_comes_from_a_callable_streams_through_the_sdk(
    fake_llm: FakeOpenAIServer, build: Build
) -> None:
    async def fresh_key() -> str:
        return "sk-rotated-456"

    fake_llm.enqueue("Signed with the fresh key.", chunk_size=5)
    seen: list[str] = []

    async def on_delta(delta: str) -> None:
        seen.append(delta)

    result = await build(fake_llm.url, api_key=fresh_key).complete(REQUEST, on_delta)
    assert result.text == "Signed with the fresh key." == "".join(seen)
    assert lowered(fake_llm.headers[0])["authorization"] == "Bearer sk-rotated-456"


async def test_a_proxy_from_the_environment_carries_the_request(
    fake_llm: FakeOpenAIServer, build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake server stands in for the proxy: the LLM's own host does not resolve, so an
    # answer means the request went through the proxy the environment names.
    proxy = fake_llm.url.removesuffix("/v1")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "")
    llm = build("http://llm.invalid:8000/v1")
    first = await llm.complete(REQUEST)
    second = await llm.complete(REQUEST)
    assert first.text == second.text == fake_llm.default_text
    assert len(fake_llm.requests) == 2


async def test_no_proxy_for_the_llm_host_goes_direct(
    fake_llm: FakeOpenAIServer, build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")  # would refuse
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    result = await build(fake_llm.url).complete(REQUEST)
    assert result.text == fake_llm.default_text


async def test_a_netrc_entry_for_the_llm_host_does_not_break_the_request(
    fake_llm: FakeOpenAIServer, build: Build, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A session trusting the environment read `~/.netrc` on every request and refused to
    # send both its credentials and the API key's Authorization header.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    result = await build(fake_llm.url).complete(REQUEST)
    assert result.text == fake_llm.default_text
    assert lowered(fake_llm.headers[0])["authorization"] == f"Bearer {KEY}"
