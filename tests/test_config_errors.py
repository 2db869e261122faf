"""Every bad configuration is one sentence naming the variable, as a new user meets it.

Each case runs the real `candor` command in a subprocess (`python -m bot.cli.main`), the way
someone trying Candor for the first time would: `candor chat --once "hi" --json`. The
command must exit non-zero, print `{"error": "<one sentence>"}` on stdout (plain text on
stderr without `--json`), name the variable or the command to run, and never show a
traceback or a bare exception class name.

Nothing waits on the network: "unreachable" is a closed loopback port (refused at once).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import make_url

from bot.settings import load_settings
from tests.conftest import _admin
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_server import FakeSlackServer

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def error(self) -> str:
        """The `error` of the one JSON object on stdout."""
        payload = json.loads(self.out)
        assert isinstance(payload, dict) and set(payload) == {"error"}, self.out
        return str(payload["error"])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens here now: connecting is refused at once


async def candor(*args: str, env: Mapping[str, str] | None = None, cwd: Path) -> Run:
    """Run `candor ARGS` in a subprocess with the test's (clean) environment plus `env`."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full.setdefault("CANDOR_DATA_DIR", str(cwd / "data"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli.main",
        *args,
        cwd=cwd,
        env=full,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def chat_json(env: Mapping[str, str], cwd: Path) -> Run:
    return await candor("chat", "--once", "hi", "--json", env=env, cwd=cwd)


def assert_one_sentence(text: str, *names: str) -> None:
    """One line, one sentence, naming each of `names`; no traceback, no class names."""
    text = text.strip()
    assert "Traceback" not in text
    assert "\n" not in text, text
    assert text.endswith("."), text
    # A sentence, not "chat failed (ArgumentError)": no exception class names.
    assert not re.search(r"\b\w*(Error|Exception)\b", text), text
    for name in names:
        assert name in text, f"{name!r} not in {text!r}"


def assert_clean_failure(run: Run, *names: str) -> None:
    assert run.code != 0
    assert_one_sentence(run.error, *names)
    assert "Traceback" not in run.err


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("CANDOR_CONTEXT_WINDOWS", "{gpt", "JSON object"),
        ("CANDOR_CONTEXT_WINDOWS", '{"my-model": 0}', "JSON object"),
        ("DATABASE_URL", "garbage", "postgresql+asyncpg://"),
        ("DATABASE_URL", "mysql://root@localhost/candor", "sqlite+aiosqlite:///"),
        ("CANDOR_BUDGET_TIMEZONE", "Mars/Base", "IANA time zone"),
        ("CANDOR_DEFAULT_MODEL", "", "model name"),
        ("CANDOR_DEFAULT_MODEL", "   ", "model name"),
        ("CANDOR_DEFAULT_TEMPERATURE", "5", "from 0 to 2"),
        ("CANDOR_DEFAULT_TEMPERATURE", "-0.1", "from 0 to 2"),
        ("CANDOR_MAX_ANSWER_TOKENS", "0", "at least 1"),
        ("CANDOR_LOG_LEVEL", "loud", "'DEBUG'"),
        ("OPENAI_TIMEOUT_SECONDS", "soon", "a number"),
    ],
)
async def test_bad_setting_is_one_sentence_naming_the_variable(
    tmp_path: Path, variable: str, value: str, allowed: str
) -> None:
    run = await chat_json({"OPENAI_API_KEY": "sk-fake", variable: value}, tmp_path)
    assert run.code == 2
    assert_clean_failure(run, variable, allowed)


async def test_bad_setting_without_json_is_one_sentence_on_stderr(tmp_path: Path) -> None:
    run = await candor(
        "chat", "--once", "hi", env={"CANDOR_BUDGET_TIMEZONE": "Mars/Base"}, cwd=tmp_path
    )
    assert run.code == 2 and run.out == ""
    assert run.err.startswith("candor: ")
    assert_one_sentence(run.err.removeprefix("candor: "), "CANDOR_BUDGET_TIMEZONE")


def test_plain_database_urls_get_the_async_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://candor:pw@db:5432/candor")
    assert load_settings(None).database_url == "postgresql+asyncpg://candor:pw@db:5432/candor"
    monkeypatch.setenv("DATABASE_URL", "postgres://candor@db/candor")
    assert load_settings(None).database_url == "postgresql+asyncpg://candor@db/candor"
    monkeypatch.setenv("DATABASE_URL", "sqlite:///data/x.db")
    assert load_settings(None).database_url == "sqlite+aiosqlite:///data/x.db"


async def test_plain_sqlite_url_just_works(tmp_path: Path, fake_llm: FakeOpenAIServer) -> None:
    fake_llm.enqueue("Hello there.")
    db_file = tmp_path / "plain.db"
    env = {"DATABASE_URL": f"sqlite:///{db_file}", "OPENAI_BASE_URL": fake_llm.url}
    run = await chat_json(env, tmp_path)
    assert run.code == 0, run.err
    assert json.loads(run.out)["answer"] == "Hello there."
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


# --------------------------------------------------------------------------- database


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+asyncpg"])
async def test_database_that_refuses_connections_names_database_url(
    tmp_path: Path, scheme: str
) -> None:
    url = f"{scheme}://candor:hunter2@127.0.0.1:{closed_port()}/candor"
    run = await chat_json({"OPENAI_API_KEY": "sk-fake", "DATABASE_URL": url}, tmp_path)
    assert_clean_failure(run, "DATABASE_URL", "refused")
    assert "hunter2" not in run.error + run.err


async def test_sqlite_file_that_cannot_be_created_names_database_url(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    env = {"OPENAI_API_KEY": "sk-fake", "DATABASE_URL": f"sqlite:///{blocker}/candor.db"}
    run = await chat_json(env, tmp_path)
    assert_clean_failure(run, "DATABASE_URL")


def sqlite_at_revision(path: Path, revision: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES (?)", (revision,))


async def test_serve_refuses_a_database_it_does_not_know_before_slack(tmp_path: Path) -> None:
    sqlite_at_revision(tmp_path / "data" / "candor.db", "9999_from_the_future")
    async with FakeSlackServer() as slack:
        env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "SLACK_API_URL": slack.url}
        run = await candor("serve", env=env, cwd=tmp_path)
        assert slack.calls == []  # it never talked to Slack
    assert run.code == 1
    assert_one_sentence(run.err.removeprefix("candor: "), "DATABASE_URL", "9999_from_the_future")


@pytest.fixture
async def empty_postgres() -> AsyncIterator[str]:
    """A Postgres database with no tables (needs TEST_DATABASE_URL)."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("needs TEST_DATABASE_URL (Postgres)")
    name = f"candor_empty_{uuid.uuid4().hex[:10]}"
    await _admin(base, f'CREATE DATABASE "{name}"')
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    await _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_unmigrated_postgres_says_run_db_upgrade(tmp_path: Path, empty_postgres: str) -> None:
    run = await chat_json({"OPENAI_API_KEY": "sk-fake", "DATABASE_URL": empty_postgres}, tmp_path)
    assert_clean_failure(run, "DATABASE_URL", "`candor db upgrade`")

    async with FakeSlackServer() as slack:
        env = {
            "DATABASE_URL": empty_postgres,
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_APP_TOKEN": "xapp-1",
            "SLACK_API_URL": slack.url,
        }
        served = await candor("serve", env=env, cwd=tmp_path)
        assert slack.calls == []
    assert served.code == 1
    assert_one_sentence(served.err.removeprefix("candor: "), "`candor db upgrade`")

    upgraded = await candor("db", "upgrade", env={"DATABASE_URL": empty_postgres}, cwd=tmp_path)
    assert upgraded.code == 0 and "database at revision" in upgraded.out


async def test_unmigrated_database_in_process_says_run_db_upgrade(tmp_path: Path) -> None:
    from bot.deps import build_deps
    from bot.errors import DatabaseNotReady

    sqlite_at_revision(tmp_path / "old.db", "0001_core")
    settings = load_settings(None, db={"url": f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"})
    with pytest.raises(DatabaseNotReady) as info:
        await build_deps(settings, migrate=False)
    assert_one_sentence(info.value.user_message, "DATABASE_URL", "0001_core", "candor db upgrade")


async def test_db_upgrade_against_a_closed_port_is_one_sentence(tmp_path: Path) -> None:
    url = f"postgresql://candor@127.0.0.1:{closed_port()}/candor"
    run = await candor("db", "upgrade", env={"DATABASE_URL": url}, cwd=tmp_path)
    assert run.code == 1
    assert_one_sentence(run.err.removeprefix("candor: "), "DATABASE_URL")


# --------------------------------------------------------------------------- the LLM


async def test_missing_key_names_base_url_and_local_llm(tmp_path: Path) -> None:
    run = await chat_json({}, tmp_path)
    assert_clean_failure(run, "OPENAI_API_KEY", "OPENAI_BASE_URL", "candor local-llm")


async def test_unreachable_base_url_names_it(tmp_path: Path) -> None:
    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1", "OPENAI_MAX_RETRIES": "3"}
    run = await chat_json(env, tmp_path)
    assert_clean_failure(run, "OPENAI_BASE_URL")
    assert "few minutes" not in run.error


async def test_offline_openai_embedder_names_the_embedder_setting(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "deploy.md").write_text("# Deploys\n\nRoll back with make rollback on the bastion.\n")
    env = {
        "OPENAI_API_KEY": "sk-fake",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
        "CANDOR_KB_EMBEDDER": "openai",
    }
    added = await candor("kb", "add", str(docs), env=env, cwd=tmp_path)
    assert added.code == 1
    assert_one_sentence(added.err.removeprefix("candor: "), "CANDOR_KB_EMBEDDER", "OPENAI_BASE_URL")

    # In a chat the knowledge base only degrades the answer: one warning line, no traceback,
    # and the answer's own failure (the same server) is the sentence.
    run = await chat_json(env, tmp_path)
    assert_clean_failure(run, "OPENAI_BASE_URL")
    warnings = [line for line in run.err.splitlines() if line.strip()]
    assert len(warnings) == 1 and "CANDOR_KB_EMBEDDER" in warnings[0]


# --------------------------------------------------------------------------- the .env file


async def test_malformed_env_line_is_warned_once_with_file_and_line(
    tmp_path: Path, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("Still here.")
    (tmp_path / ".env").write_text(
        f"OPENAI_BASE_URL={fake_llm.url}\nthis line is not a setting\nCANDOR_DEFAULT_MODEL=gpt-4o\n"
    )
    run = await chat_json({}, tmp_path)
    assert run.code == 0, run.err
    assert json.loads(run.out)["model"] == "gpt-4o"  # the lines around it still count
    assert run.err.count("line 2 of .env") == 1
    assert "python-dotenv" not in run.err
    assert_one_sentence(run.err.strip().removeprefix("candor: warning: "), "line 2 of .env")


async def test_unclosed_quote_points_at_the_line_not_at_adding_the_key(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text('CANDOR_DEFAULT_MODEL=m1\nOPENAI_API_KEY="sk-abc\n')
    run = await chat_json({}, tmp_path)
    assert_clean_failure(run, "OPENAI_API_KEY", "line 2 of .env", "quote")
    assert "add it" not in run.error
    assert "sk-abc" not in run.error + run.err
    assert run.err.count("line 2 of .env") == 1


def retries_logged(caplog: pytest.LogCaptureFixture) -> int:
    return sum("Retrying request" in r.getMessage() for r in caplog.records)


async def test_refused_configured_base_url_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.deps import LLMUnreachable, build_openai

    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "3")
    client = build_openai(load_settings(None))
    caplog.set_level("INFO", logger="openai._base_client")  # the CLI mutes it
    with pytest.raises(LLMUnreachable) as info:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    await client.close()
    assert retries_logged(caplog) == 0
    assert_one_sentence(info.value.user_message, "OPENAI_BASE_URL")


async def test_refused_default_endpoint_is_retried_then_explained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from openai import AsyncOpenAI, DefaultAsyncHttpxClient

    from bot.deps import FailFastTransport, LLMUnreachable

    # OpenAI itself (no OPENAI_BASE_URL): a blip may pass, so the SDK retries; the last
    # failure says what to check. A closed local port stands in for "offline".
    transport = FailFastTransport(configured=False, max_retries=1)
    client = AsyncOpenAI(
        api_key="sk-fake",
        base_url=f"http://127.0.0.1:{closed_port()}/v1",
        max_retries=1,
        http_client=DefaultAsyncHttpxClient(transport=transport),
    )
    caplog.set_level("INFO", logger="openai._base_client")  # the CLI mutes it
    with pytest.raises(LLMUnreachable) as info:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    await client.close()
    assert retries_logged(caplog) == 1
    assert_one_sentence(info.value.user_message, "OPENAI_BASE_URL", "network")
