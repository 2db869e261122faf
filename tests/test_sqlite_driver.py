"""The SQLite driver behind the async engine: one trip per statement, nothing else changes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import exc, text

from bot.db import sqlite_driver
from bot.db.engine import open_database


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every trip to a connection's thread, by the name of what ran there."""
    seen: list[str] = []
    original = sqlite_driver._Worker.run

    async def counted(self: sqlite_driver._Worker, function: object) -> object:
        seen.append(getattr(function, "__name__", "?"))
        return await original(self, function)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_driver._Worker, "run", counted)
    return seen


async def test_rows_errors_and_transactions_behave_as_with_aiosqlite(tmp_path: Path) -> None:
    db = open_database(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
            inserted = await conn.execute(
                text("INSERT INTO t (name) VALUES (:n) RETURNING id"), {"n": "a"}
            )
            assert inserted.scalar_one() == 1
            await conn.execute(text("INSERT INTO t (name) VALUES (:n)"), [{"n": "b"}, {"n": "c"}])
        with pytest.raises(exc.IntegrityError):
            async with db.engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (name) VALUES ('d')"))
                await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))  # duplicate
        async with db.engine.connect() as conn:
            names = (await conn.execute(text("SELECT name FROM t ORDER BY id"))).scalars().all()
        assert names == ["a", "b", "c"]  # the failed transaction left nothing behind
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    ("quick", "expected"),
    [(False, ["run", "run", "commit", "run"]), (True, ["commit", "run"])],
    ids=["on-the-thread", "quick"],
)
async def test_a_statement_is_one_trip_or_none_when_quick_and_the_reset_is_none(
    tmp_path: Path, trips: list[str], quick: bool, expected: list[str]
) -> None:
    db = open_database(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)"))
        trips.clear()
        async with db.write(quick=quick) as session:
            await session.execute(text("INSERT INTO t (name) VALUES ('x')"))
            rows = (await session.execute(text("SELECT id, name FROM t"))).all()
        async with db.sessions() as session:  # outside `quick`: on the thread again
            count = (await session.execute(text("SELECT count(*) FROM t"))).scalar_one()

        assert [tuple(r) for r in rows] == [(1, "x")]
        assert count == 1
        # Each statement (with its rows) is one trip, or none inside `quick`; COMMIT is
        # always one; the pool's rollback-on-return finds no transaction open and stays
        # here. aiosqlite made four trips per statement.
        assert trips == expected
    finally:
        await db.dispose()


@pytest.mark.parametrize("quick", [False, True], ids=["on-the-thread", "quick"])
async def test_waiting_for_another_processes_write_lock_never_blocks_the_event_loop(
    tmp_path: Path, quick: bool
) -> None:
    path = tmp_path / "t.db"
    db = open_database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        # The next connection opens inside the write below: its setup (which sets the
        # busy timeout) runs there too, quick or not.
        await db.engine.dispose()
        # Another process (a CLI command) holds the write lock for a while.
        holder = sqlite3.connect(path, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO t DEFAULT VALUES")
        released = threading.Event()

        def release_later() -> None:
            released.wait(10)
            holder.commit()
            holder.close()

        releaser = threading.Thread(target=release_later)
        releaser.start()
        ticks = 0

        async def ticking() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                if ticks == 20:
                    released.set()  # the loop ran while the write waited: let it through
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(ticking())
        async with db.write(quick=quick) as session:
            await session.execute(text("INSERT INTO t DEFAULT VALUES"))
        ticker.cancel()
        releaser.join()

        assert ticks >= 20
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 2
    finally:
        await db.dispose()


async def test_a_closed_connection_refuses_work_in_one_sentence(tmp_path: Path) -> None:
    connection = await sqlite_driver.connect(str(tmp_path / "t.db"))
    await connection.close()
    with pytest.raises(ValueError, match="no active connection"):
        await connection.execute("SELECT 1")
