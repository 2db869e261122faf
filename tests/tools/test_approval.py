"""A tool with side effects waits for a person: Approve / Deny through the real Bolt path
(signed `block_actions`), only the asker or an admin decides, and Deny is respected."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from bot.deps import Deps
from bot.tools.mcp import load_config
from handlers.tools import APPROVE_ACTION, DENY_ACTION, NOT_YOURS
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention, block_actions
from tests.handlers.conftest import Candor
from tests.tools.helpers import allow

SERVER = '''
import sys
from pathlib import Path
from mcp.server.mcpserver import MCPServer

app = MCPServer("notes")
NOTES = Path(sys.argv[1])


@app.tool()
def add_note(text: str) -> str:
    """Save a note."""
    NOTES.write_text(text)
    return "saved"


if __name__ == "__main__":
    app.run()
'''


@pytest.fixture
def notes(tmp_path: Path, deps: Deps) -> Path:
    script = tmp_path / "notes_server.py"
    script.write_text(SERVER)
    saved = tmp_path / "saved.txt"
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "notes": {"command": sys.executable, "args": [str(script), str(saved)]}
                }
            }
        )
    )
    deps.manager.tools.servers = load_config(config)
    return saved


async def _approval_request(candor: Candor) -> tuple[str, str]:
    """The approval message's id value, and its text as the user sees it."""

    def asked() -> bool:
        return any(m.get("blocks") for m in candor.slack.calls_to("chat.postMessage"))

    await candor.slack.wait_until(asked, what="the approval message")
    call = next(m for m in candor.slack.calls_to("chat.postMessage") if m.get("blocks"))
    blocks = call.get("blocks")
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    value = blocks[-1]["elements"][0]["value"]
    return value, blocks[0]["text"]["text"]


async def test_deny_is_respected_and_only_the_asker_decides(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer, notes: Path
) -> None:
    await allow(deps, "notes/add_note", channel="C1")  # allowed, not marked read-only
    fake_llm.enqueue_tool_calls(("notes__add_note", {"text": "ship friday"}))
    fake_llm.enqueue("I did not save the note.")

    await candor.send.event(app_mention("<@UBOT> save a note: ship friday", user="U1"))
    value, shown = await _approval_request(candor)
    assert "`notes/add_note`" in shown
    assert '"text": "ship friday"' in shown  # the exact arguments

    # Someone else (not an admin) cannot approve it.
    url = candor.slack.response_url()
    await candor.send.action(block_actions(APPROVE_ACTION, value, user_id="U2", response_url=url))
    [refused] = await candor.slack.wait_for("response_url")
    assert refused.get("text") == NOT_YOURS

    await candor.send.action(block_actions(DENY_ACTION, value, user_id="U1"))
    await candor.idle()

    assert not await asyncio.to_thread(notes.exists)  # the tool never ran
    results = [m["content"] for m in fake_llm.last["messages"] if m["role"] == "tool"]
    assert results[0].startswith("error: The person asked did not approve this call")
    [update] = [c for c in candor.slack.calls_to("chat.update") if "Denied" in str(c.get("text"))]
    assert update.get("text") == "🚫 Denied by <@U1>; the tool was not run."
    assert "I did not save the note." in " ".join(candor.slack.texts("C1"))


async def test_approve_runs_the_tool(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer, notes: Path
) -> None:
    await allow(deps, "notes/add_note", channel="C1")
    fake_llm.enqueue_tool_calls(("notes__add_note", {"text": "ship friday"}))
    fake_llm.enqueue("Saved.")

    await candor.send.event(app_mention("<@UBOT> save a note", user="U1"))
    value, _ = await _approval_request(candor)
    await candor.send.action(block_actions(APPROVE_ACTION, value, user_id="U1"))
    await candor.idle()

    assert await asyncio.to_thread(notes.read_text) == "ship friday"
    results = [m["content"] for m in fake_llm.last["messages"] if m["role"] == "tool"]
    assert results == ["saved"]
    # The answer's footer says which tools were used.
    footer = [c for c in candor.slack.calls if "tools used: notes/add_note" in json.dumps(c.body)]
    assert footer


async def test_no_answer_in_time_denies(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer, notes: Path
) -> None:
    deps.settings.candor.tool_approval_timeout_seconds = 0.2
    await allow(deps, "notes/add_note", channel="C1")
    fake_llm.enqueue_tool_calls(("notes__add_note", {"text": "x"}))
    fake_llm.enqueue("Not saved.")

    await candor.send.event(app_mention("<@UBOT> save", user="U1"))
    await candor.idle()

    assert not await asyncio.to_thread(notes.exists)
    assert any(
        "Nobody approved within 0.2 seconds" in str(c.get("text"))
        for c in candor.slack.calls_to("chat.update")
    )
