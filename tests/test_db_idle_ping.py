"""Postgres connections are pinged before use only after sitting idle (`_ping_when_idle`):
a connection that died while idle is replaced unseen, one in steady use costs no ping."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from bot.db import engine as engine_module
from bot.db.engine import Database, open_database


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[Database]:
    if database_url.startswith("sqlite"):
        pytest.skip("Postgres only (TEST_DATABASE_URL): SQLite has no connection to lose")
    db = open_database(database_url)
    yield db
    await db.dispose()


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    original = AsyncAdapt_asyncpg_connection.ping

    def counted(self: AsyncAdapt_asyncpg_connection) -> None:
        seen.append(1)
        original(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counted)
    return seen


async def _backend_pid(db: Database) -> int:
    async with db.sessions() as session:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_in_steady_use_is_not_pinged(pg: Database, pings: list[int]) -> None:
    first = await _backend_pid(pg)
    for _ in range(5):
        assert await _backend_pid(pg) == first  # the same connection, reused at once
    assert pings == []


async def test_a_connection_that_died_while_idle_is_replaced_before_use(
    pg: Database, database_url: str, pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = await _backend_pid(pg)
    admin = open_database(database_url)  # another pool, to kill the first one's connection
    try:
        async with admin.engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead})
            await conn.commit()
    finally:
        await admin.dispose()
    # The pooled connection has now been idle past the threshold.
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", -1.0)

    alive = await _backend_pid(pg)  # no error: the ping found it dead, a new one served

    assert alive != dead
    assert pings  # the idle connection was pinged before use
