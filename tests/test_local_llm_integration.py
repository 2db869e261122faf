"""Opt-in: the real bundled model through llama.cpp's OpenAI-compatible server.

Skipped unless `CANDOR_LLM_INTEGRATION=1` and the `local` extra is installed. It starts
`candor local-llm`'s server command on a free loopback port and checks the plumbing
(streaming, usage, logprobs) with Gemma 3 270M, a tiny base model: it asserts nothing
about answer quality.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from bot.cli.local_llm import MODEL_ALIAS, gguf_path, server_command
from bot.llm import ChatRequest, LLMGateway
from bot.tokens import TokenCounter

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get("CANDOR_LLM_INTEGRATION") != "1"
        or importlib.util.find_spec("llama_cpp") is None,
        reason="set CANDOR_LLM_INTEGRATION=1 with `pip install -e '.[local]'` to run",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    model = gguf_path(tmp_path_factory.mktemp("gguf"))
    process = subprocess.Popen(
        server_command(model, host="127.0.0.1", port=port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(240):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail("the llama.cpp server exited during start-up")
                import time

                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_streams_with_usage_and_logprobs(local_server: str, tmp_path: Path) -> None:
    client = AsyncOpenAI(base_url=local_server, api_key="local", timeout=120)
    gateway = LLMGateway(client, TokenCounter(tmp_path))
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    result = await gateway.complete(
        ChatRequest(
            model=MODEL_ALIAS,
            messages=[{"role": "user", "content": "Say hello."}],
            temperature=0.0,
            max_tokens=16,
            logprobs=True,
        ),
        on_delta,
    )
    await client.close()
    assert "".join(deltas) == result.text
    assert result.usage.prompt_tokens > 0
    assert result.usage.completion_tokens > 0
    await asyncio.sleep(0)
