"""`candor chat` end to end: the same manager, the real database, the fake LLM.

`main()` runs its own event loop, so each test runs it in a worker thread while the
fake LLM server keeps serving on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.settings import Settings
from tests.fakes.openai_server import FakeOpenAIServer


async def run(argv: Sequence[str]) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_chat_once_json_prints_one_object(
    settings: Settings, fake_llm: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.enqueue("Forty-two.", prompt_tokens=30, completion_tokens=3)
    code = await run(
        ["--env-file", "/nonexistent", "chat", "--channel", "C9", "--once", "Meaning?", "--json"]
    )
    out = capsys.readouterr().out
    assert code == 0
    payload = json.loads(out)
    assert payload["answer"] == "Forty-two."
    assert payload["model"] == "gpt-4o-mini"
    assert payload["usage"]["prompt_tokens"] == 30
    assert payload["usage"]["completion_tokens"] == 3
    assert payload["sources"] == []
    assert fake_llm.last["messages"][-1] == {"role": "user", "content": "Meaning?"}


async def test_chat_once_streams_then_prints_usage(
    settings: Settings, fake_llm: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.enqueue("Streamed answer.", prompt_tokens=10, completion_tokens=4)
    assert await run(["chat", "--once", "Hello?"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "Streamed answer."
    assert "[gpt-4o-mini · 10 prompt + 4 completion tokens" in captured.err


async def test_chat_repl_keeps_the_thread(
    settings: Settings,
    fake_llm: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = iter(["first question", "second question"])

    def fake_input(prompt: str = "") -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    fake_llm.enqueue("first answer")
    fake_llm.enqueue("second answer")
    assert await run(["chat"]) == 0
    contents = [m["content"] for m in fake_llm.last["messages"][1:]]
    assert contents == ["first question", "first answer", "second question"]


async def test_llm_failure_is_one_sentence_and_exit_code_1(
    settings: Settings, fake_llm: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.enqueue_error(401, times=3)
    assert await run(["chat", "--once", "Hi"]) == 1
    err = capsys.readouterr().err
    assert "candor: Candor could not sign in to the language model" in err
    assert "Traceback" not in err and "sk-test-secret-value" not in err


async def test_missing_api_key_is_explained(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(["chat", "--once", "Hi"]) == 1
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err


async def test_db_upgrade_reports_revision(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(["db", "upgrade"]) == 0
    assert "database at revision" in capsys.readouterr().out


async def test_usage_tables_after_a_chat(
    settings: Settings, fake_llm: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.enqueue("Paid answer.", prompt_tokens=1000, completion_tokens=100)
    assert await run(["chat", "--user", "U42", "--once", "Hi"]) == 0
    capsys.readouterr()

    assert await run(["usage", "--user", "U42"]) == 0
    line = capsys.readouterr().out
    # gpt-4o-mini: 1000 x $0.15/M + 100 x $0.60/M = $0.00021.
    assert line.startswith("<@U42> has used $0.0002 of their $5.00 monthly budget (0%, 1 call)")

    assert await run(["usage", "--period", "day"]) == 0
    table = capsys.readouterr().out
    assert "Top users this day" in table
    assert "U42" in table


async def test_kb_add_list_search_remove(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "deploy.md").write_text("# Deploys\n\nRoll back with `make rollback` on the bastion.\n")
    (docs / "logo.bin").write_bytes(b"\x00\x01")
    assert await run(["kb", "add", str(docs)]) == 0
    out = capsys.readouterr().out
    assert "1 sources into workspace: 1 chunks added" in out
    assert "skipped" in out and "logo.bin" in out

    assert await run(["kb", "add", str(docs)]) == 0  # idempotent
    assert "0 chunks added, 0 removed, 1 unchanged" in capsys.readouterr().out

    assert await run(["kb", "list"]) == 0
    listing = capsys.readouterr().out
    assert "deploy.md" in listing and "workspace" in listing

    assert await run(["kb", "search", "how do I roll back", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out.splitlines()[0])
    assert hit["title"] and hit["score"] > 0 and "rollback" in hit["text"]

    source = listing.split()[2]
    assert await run(["kb", "remove", source]) == 0
    assert "Removed" in capsys.readouterr().out
    assert await run(["kb", "search", "roll back"]) == 0
    assert "No matching knowledge" in capsys.readouterr().out


async def test_kb_bad_scope_is_one_sentence(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(["kb", "add", ".", "--scope", "everyone"]) == 1
    err = capsys.readouterr().err
    assert "--scope" in err and "workspace or channel:C123" in err


def test_migrations_form_one_line_of_history() -> None:
    from alembic.script import ScriptDirectory

    from bot.db.engine import alembic_config

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"migrations branch: {heads}; set down_revision to the latest"


async def test_kb_while_another_process_holds_the_store_is_one_sentence(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    docs = tmp_path / "a.md"
    docs.write_text("# Deploys\n\nRoll back with make rollback.\n")
    assert await run(["kb", "add", str(docs)]) == 0
    capsys.readouterr()
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_STORE, stdout=asyncio.subprocess.PIPE, env=dict(os.environ)
    )
    assert holder.stdout is not None
    assert (await holder.stdout.readline()).strip() == b"open"
    try:
        assert await run(["kb", "list"]) == 1
    finally:
        holder.terminate()
        await holder.wait()
    err = capsys.readouterr().err
    assert "is open in another process (is `candor serve` running?)" in err
    assert "Traceback" not in err


HOLD_STORE = """
import asyncio
from bot.kb import build_knowledge_base
from bot.settings import load_settings
from bot.tokens import TokenCounter

async def main():
    kb = build_knowledge_base(load_settings(None), TokenCounter(None), None)
    await kb.list_sources()
    print("open", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""
