"""Shared fixtures: a migrated database per test, the fake LLM, settings and deps.

The database is SQLite (a fresh copy of a migrated template file per test) unless
`TEST_DATABASE_URL` names another one, e.g.
`postgresql+asyncpg://postgres@127.0.0.1:5432/test`: then each run creates a database of
its own next to that one (so concurrent runs never collide), migrates it once, truncates
every table (re-seeding the workspace-default row) after each test, and drops it at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.clock import FixedClock
from bot.db.engine import Database, open_database, upgrade
from bot.deps import Deps, build_deps
from bot.settings import Settings, load_settings
from tests.fakes.openai_server import FakeOpenAIServer

ENV_PREFIXES = ("SLACK_", "OPENAI_", "DATABASE_", "QDRANT_", "CANDOR_", "TIKTOKEN_")
START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _postgres_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL") or None


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's own configuration."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES) and name != "TEST_DATABASE_URL":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(statement))
    await engine.dispose()


async def _create_postgres(url: str, name: str) -> str:
    await _admin(url, f'CREATE DATABASE "{name}"')
    own = make_url(url).set(database=name).render_as_string(hide_password=False)
    db = open_database(own)
    await upgrade(db)
    await db.dispose()
    return own


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database: a Postgres URL of this run's own, or a SQLite template file."""
    url = _postgres_url()
    if url:
        name = f"candor_test_{uuid.uuid4().hex[:10]}"
        own = asyncio.run(_create_postgres(url, name))
        yield own
        asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return
    template = tmp_path_factory.mktemp("db") / "template.db"

    async def make() -> None:
        db = open_database(f"sqlite+aiosqlite:///{template}")
        await upgrade(db)
        await db.dispose()

    asyncio.run(make())
    yield str(template)


@pytest.fixture
def database_url(migrated_database: str, tmp_path: Path) -> Iterator[str]:
    if not _postgres_url():
        target = tmp_path / "candor.db"
        shutil.copy(migrated_database, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    yield migrated_database
    # Tests that reach the database only through the CLI or a subprocess never open the
    # `db` fixture, so its truncation would not run and their rows would leak into the
    # next test (seen: a `candor chat` answer stamped by the wall clock).
    asyncio.run(_truncate_url(migrated_database))


async def _truncate_url(url: str) -> None:
    database = open_database(url)
    try:
        await truncate_all(database)
    finally:
        await database.dispose()


async def truncate_all(db: Database) -> None:
    async with db.engine.begin() as conn:
        # This run's database is its own and tests run one at a time, so any other
        # connection still open here was left behind by the test that just ended (a task
        # cut off with its transaction open); it would block TRUNCATE forever.
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        rows = await conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        )
        tables = [r[0] for r in rows]
        if tables:
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        await conn.execute(
            text("INSERT INTO channel_settings (workspace_id, channel_id) VALUES ('*', '*')")
        )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = open_database(database_url)
    yield database
    await database.dispose()  # `database_url` truncates Postgres after every test


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def settings(
    tmp_path: Path, fake_llm: FakeOpenAIServer, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings pointing at the fake LLM and the test database (also set in the env,
    so a CLI run inside the test sees the same)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.url)
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "2")
    monkeypatch.setenv("OPENAI_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("CANDOR_DATA_DIR", str(tmp_path / "data"))
    return load_settings(None)


@pytest.fixture
async def deps(settings: Settings, db: Database, clock: FixedClock) -> AsyncIterator[Deps]:
    built = await build_deps(settings, clock=clock, db=db, migrate=False)
    yield built
    await built.openai.close()
