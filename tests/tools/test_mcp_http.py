"""MCP over streamable HTTP: a real server started by the test on loopback, requiring a
bearer token, listed and called through the loop; a wrong token is one sentence without the
token; a loopback URL is refused unless the admin allowed private networks."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.deps import Deps
from bot.tools.mcp import McpConnections, load_config
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import make_turn
from tests.tools.helpers import allow, use_servers

TOKEN = "wiki-bearer-7f3a9c"
WRONG = "wrong-bearer-51d2e0"

SERVER = f'''
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

app = MCPServer("wiki")


@app.tool()
def shout(text: str) -> str:
    """Say a text loudly."""
    return text.upper() + "!"


def require_token(inner):
    """401 for any HTTP request without `Authorization: Bearer {TOKEN}`."""

    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            if dict(scope["headers"]).get(b"authorization") != b"Bearer {TOKEN}":
                await send({{"type": "http.response.start", "status": 401, "headers": []}})
                await send({{"type": "http.response.body", "body": b"unauthorized"}})
                return
        await inner(scope, receive, send)

    return guarded


if __name__ == "__main__":
    asgi = require_token(app.streamable_http_app(host="127.0.0.1"))
    uvicorn.run(asgi, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def wiki_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    script = tmp_path_factory.mktemp("wiki") / "wiki_server.py"
    script.write_text(SERVER)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(400):  # at most ~20 s for the interpreter and the SDK to start
            if process.poll() is not None:
                raise RuntimeError("the MCP test server exited before it listened")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("the MCP test server did not listen in time")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def write_config(tmp_path: Path, url: str, *, private: bool = True) -> Path:
    server: dict[str, object] = {"url": url, "bearer_token_env": "WIKI_TOKEN"}
    if private:
        server["allow_private_network"] = True
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"wiki": server}}))
    return config


async def test_http_server_with_bearer_token_is_listed_and_called(
    deps: Deps,
    fake_llm: FakeOpenAIServer,
    wiki_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WIKI_TOKEN", TOKEN)
    box = use_servers(deps, write_config(tmp_path, wiki_url))
    listed = {e.spec.name: e.as_dict() for e in await box.catalogue("T1")}
    assert listed["wiki__shout"]["source"] == "MCP server wiki"

    await allow(deps, "wiki/shout", channel="C1", read_only=True)
    fake_llm.enqueue_tool_calls(("wiki__shout", {"text": "deploy freeze"}))
    fake_llm.enqueue("DEPLOY FREEZE!")

    answer = await deps.manager.reply(make_turn("Shout it"))

    assert [t["function"]["name"] for t in fake_llm.requests[0]["tools"]] == ["wiki__shout"]
    tool_results = [m["content"] for m in fake_llm.last["messages"] if m["role"] == "tool"]
    assert tool_results == ["DEPLOY FREEZE!"]
    assert answer.tool_calls[0]["tool"] == "wiki/shout"
    assert answer.tool_calls[0]["ok"] is True


async def test_a_wrong_token_is_one_sentence_without_the_token(
    deps: Deps,
    fake_llm: FakeOpenAIServer,
    wiki_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("WIKI_TOKEN", WRONG)
    config = write_config(tmp_path, wiki_url)
    caplog.set_level(logging.DEBUG)

    async with McpConnections(load_config(config)) as connections:
        assert await connections.list_tools("wiki") == []
    sentence = (
        "MCP server wiki refused Candor's credentials (HTTP 401); check the token in WIKI_TOKEN."
    )
    assert connections.failed == {"wiki": sentence}

    # In a turn the server's tools are simply not offered; the answer goes on without them.
    use_servers(deps, config)
    await allow(deps, "wiki", channel="C1", read_only=True)
    fake_llm.enqueue("Plain answer.")
    answer = await deps.manager.reply(make_turn("Shout it"))
    assert answer.text == "Plain answer."
    assert "tools" not in fake_llm.last
    assert WRONG not in caplog.text
    assert sentence in caplog.text


async def test_a_loopback_server_needs_allow_private_network(
    wiki_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WIKI_TOKEN", TOKEN)
    config = write_config(tmp_path, wiki_url, private=False)

    async with McpConnections(load_config(config)) as connections:
        assert await connections.list_tools("wiki") == []
    assert "private or loopback" in connections.failed["wiki"]
