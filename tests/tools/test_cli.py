"""`candor tools` and `candor chat` with tools, through `main()` like a terminal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest
from sqlalchemy import select

from bot.cli.main import main
from bot.db.admin_models import AuditRow
from bot.db.engine import Database
from bot.settings import Settings
from tests.fakes.openai_server import FakeOpenAIServer


async def run(argv: Sequence[str]) -> int:
    return await asyncio.to_thread(main, ["--env-file", "/nonexistent", *argv])


async def test_allow_list_and_chat_json_lists_tool_calls(
    settings: Settings,
    db: Database,
    fake_llm: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await run(["tools", "allow", "builtin/current_time", "--channel", "C9"]) == 0
    assert capsys.readouterr().out.strip() == "builtin/current_time is allowed in C9."

    assert await run(["tools", "list", "--json"]) == 0
    listed = {row["tool"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["builtin/current_time"]["allowed_in"] == ["C9"]
    assert listed["builtin/current_time"]["source"] == "built-in"
    assert listed["builtin/current_time"]["read_only"] is True
    assert listed["builtin/read_thread"]["allowed_in"] == []

    fake_llm.enqueue_tool_calls(("current_time", {}))
    fake_llm.enqueue("It is nine.")
    assert await run(["chat", "--channel", "C9", "--once", "Time?", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["answer"] == "It is nine."
    assert [c["tool"] for c in payload["tool_calls"]] == ["builtin/current_time"]

    async with db.sessions() as session:
        rows = (await session.execute(select(AuditRow))).scalars().all()
    assert [(r.actor_id, r.action, r.target) for r in rows] == [
        ("cli", "tools allow", "builtin/current_time@C9")
    ]


async def test_unknown_server_is_one_sentence(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(["tools", "deny", "wiki", "--workspace"]) != 0
    captured = capsys.readouterr()
    assert "There is no MCP server `wiki`" in captured.err + captured.out
    assert "Traceback" not in captured.err
