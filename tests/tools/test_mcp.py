"""MCP: a real stdio server started by the test (the `mcp` SDK's MCPServer), listed and
called through the loop; the SSRF guard; the configuration file's errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bot.deps import Deps
from bot.tools.mcp import McpConfigError, McpConnections, McpRefused, check_url, load_config
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import make_turn
from tests.tools.helpers import allow, use_servers

SERVER = '''
from mcp.server.mcpserver import MCPServer

app = MCPServer("notes")


@app.tool()
def word_count(text: str) -> str:
    """Count the words of a text."""
    return f"{len(text.split())} words"


@app.tool()
def explode() -> str:
    """Always fails."""
    raise ValueError("secret-token-123 leaked in a traceback")


if __name__ == "__main__":
    app.run()
'''


@pytest.fixture
def notes_config(tmp_path: Path) -> Path:
    script = tmp_path / "notes_server.py"
    script.write_text(SERVER)
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps({"mcpServers": {"notes": {"command": sys.executable, "args": [str(script)]}}})
    )
    return config


async def test_stdio_server_is_listed_and_called(
    deps: Deps, fake_llm: FakeOpenAIServer, notes_config: Path
) -> None:
    box = use_servers(deps, notes_config)
    listed = {e.spec.name: e.as_dict() for e in await box.catalogue("T1")}
    assert listed["notes__word_count"]["source"] == "MCP server notes"
    assert listed["notes__word_count"]["read_only"] is False
    assert listed["notes__word_count"]["allowed_in"] == []

    await allow(deps, "notes/word_count", channel="C1", read_only=True)
    fake_llm.enqueue_tool_calls(("notes__word_count", {"text": "one two three"}))
    fake_llm.enqueue("Three words.")

    answer = await deps.manager.reply(make_turn("Count my words"))

    offered = [t["function"]["name"] for t in fake_llm.requests[0]["tools"]]
    assert offered == ["notes__word_count"]  # only what the admin allowed, here
    assert [m["content"] for m in fake_llm.last["messages"] if m["role"] == "tool"] == ["3 words"]
    assert answer.tool_calls[0]["tool"] == "notes/word_count"
    assert answer.text == "Three words."


async def test_a_failing_mcp_tool_is_a_result_without_its_exception_text(
    deps: Deps, fake_llm: FakeOpenAIServer, notes_config: Path
) -> None:
    use_servers(deps, notes_config)
    await allow(deps, "notes", read_only=True)
    fake_llm.enqueue_tool_calls(("notes__explode", {}))
    fake_llm.enqueue("It failed.")

    await deps.manager.reply(make_turn("Explode"))

    (result,) = [m["content"] for m in fake_llm.last["messages"] if m["role"] == "tool"]
    assert result.startswith("error: ")
    assert "secret-token-123" not in result


async def test_mcp_tools_of_other_channels_are_not_offered(
    deps: Deps, fake_llm: FakeOpenAIServer, notes_config: Path
) -> None:
    use_servers(deps, notes_config)
    await allow(deps, "notes", channel="C2", read_only=True)
    fake_llm.enqueue("Plain.")

    await deps.manager.reply(make_turn(channel_id="C1"))

    assert "tools" not in fake_llm.last


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/mcp",
        "http://localhost/mcp",
        "http://10.1.2.3/mcp",
        "http://[::1]/mcp",
    ],
)
async def test_http_servers_on_private_addresses_are_refused(tmp_path: Path, url: str) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"web": {"url": url}}}))
    server = load_config(config)["web"]
    with pytest.raises(McpRefused):
        await check_url(server, allow_private_network=False)
    await check_url(server, allow_private_network=True)  # the admin allowed it
    async with McpConnections({"web": server}) as connections:
        assert await connections.list_tools("web") == []
        assert "private or loopback" in connections.failed["web"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{", "not valid JSON"),
        ('{"servers": {}}', "mcpServers"),
        ('{"mcpServers": {"a__b": {"command": "x"}}}', "server name"),
        ('{"mcpServers": {"a": {"url": "file:///etc/passwd"}}}', "http(s)"),
        ('{"mcpServers": {"a": {}}}', "either `command` or `url`"),
    ],
)
def test_config_errors_are_one_sentence(tmp_path: Path, content: str, says: str) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(content)
    with pytest.raises(McpConfigError) as caught:
        load_config(config)
    assert says in caught.value.user_message
    assert caught.value.user_message.startswith("CANDOR_MCP_CONFIG")
