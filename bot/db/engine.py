"""Engine and session factory, and the migration runner.

`Database` wraps one async engine and its session factory. It is built once by
`bot.deps.build_deps` (or by a test) and passed down; nothing here runs at import time.
SQLite gets WAL and a busy timeout so concurrent writers wait instead of failing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class Database:
    """An async engine plus its session factory.

    `write()` opens a transaction for writing. On SQLite it first takes an in-process
    lock: SQLite allows one writer at a time, and its busy handler backs off with sleeps
    of up to 100 ms, so hundreds of concurrent writers queueing inside SQLite take
    seconds each; queueing them on an `asyncio.Lock` takes milliseconds. (SQLite is a
    single-process store, so this lock is not state a second replica would miss; on
    Postgres `write()` is a plain transaction.)
    """

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    write_lock: asyncio.Lock | None = field(default=None, compare=False)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        if self.write_lock is None:
            async with self.sessions.begin() as session:
                yield session
            return
        async with self.write_lock, self.sessions.begin() as session:
            yield session

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def dispose(self) -> None:
        await self.engine.dispose()


def open_database(url: str, *, echo: bool = False) -> Database:
    """Create the engine for `url` (creating the SQLite file's folder if needed)."""
    kwargs: dict[str, Any] = {"echo": echo}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
        kwargs["pool_timeout"] = 120
    else:
        kwargs["pool_size"] = 20
        kwargs["max_overflow"] = 20
        kwargs["pool_pre_ping"] = True
        kwargs["pool_timeout"] = 120
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return Database(
        engine=engine,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        write_lock=asyncio.Lock() if url.startswith("sqlite") else None,
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # In WAL mode NORMAL never corrupts the database; it only skips the fsync per commit
    # (the last commits can roll back on power loss, not on a process crash).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    """Apply migrations up to `revision` on `db`."""

    def run(sync_conn: Connection) -> None:
        command.upgrade(alembic_config(sync_conn), revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def read(sync_conn: Connection) -> str | None:
        heads = MigrationContext.configure(sync_conn).get_current_heads()
        return ", ".join(sorted(heads)) or None

    async with db.engine.connect() as conn:
        return await conn.run_sync(read)
