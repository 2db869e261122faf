"""The writer gate (`Database.write`): a burst of writers is served first come, first
served, `DATABASE_WRITERS` at a time on Postgres and one at a time on SQLite."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from bot.db.engine import open_database
from bot.deps import open_checked_database
from bot.gate import FairGate
from bot.settings import ConfigError, load_settings


async def _burst(url: str, *, writers: int, n: int = 6) -> tuple[list[int], int]:
    """`n` writers arriving in order, each holding its transaction until let go: the
    order they got in, and the most that were ever in at once."""
    db = open_database(url, writers=writers)
    entered: list[int] = []
    inside = 0
    most = 0
    go = asyncio.Event()

    async def writer(i: int) -> None:
        nonlocal inside, most
        async with db.write() as session:
            entered.append(i)
            await session.execute(text("SELECT 1"))
            inside += 1
            most = max(most, inside)
            await go.wait()
            inside -= 1

    try:
        tasks = []
        for i in range(n):
            tasks.append(asyncio.create_task(writer(i)))
            await asyncio.sleep(0)  # arrive in this order
        for _ in range(50):  # everyone who may get in is in, the rest queue
            await asyncio.sleep(0.01)
        go.set()
        await asyncio.gather(*tasks)
    finally:
        await db.dispose()
    return entered, most


async def test_writers_get_in_in_the_order_they_came_and_no_more_than_allowed_at_once(
    database_url: str,
) -> None:
    entered, most = await _burst(database_url, writers=2)
    assert entered == list(range(6))
    # SQLite lets one writer in whatever the setting says; Postgres lets the setting in.
    assert most == (1 if database_url.startswith("sqlite") else 2)


async def test_database_writers_setting_reaches_the_gate(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATABASE_WRITERS", "3")
    db = open_checked_database(load_settings())
    try:
        assert db.write_gate is not None
        expected = 1 if database_url.startswith("sqlite") else 3
        assert db.write_gate.capacity == db.write_gate.free == expected
    finally:
        await db.dispose()


def test_database_writers_out_of_range_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_WRITERS", "0")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "DATABASE_WRITERS" in str(caught.value)


async def test_a_single_statement_commits_by_itself_and_on_postgres_skips_the_gate(
    database_url: str,
) -> None:
    """`one_statement`: a claim's mark is one UPDATE, written and committed at once. On
    Postgres it needs no place among the writers (it holds no lock past itself); on SQLite
    it waits for the one writer, as every write there does."""
    db = open_database(database_url, writers=1)
    other = open_database(database_url)
    try:
        async with db.write() as session:
            await session.execute(text("CREATE TABLE gate_marks (k TEXT PRIMARY KEY, v TEXT)"))
            await session.execute(text("INSERT INTO gate_marks VALUES ('m', 'claimed')"))
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold_the_gate() -> None:
            async with db.write():
                held.set()
                await release.wait()

        holder = asyncio.create_task(hold_the_gate())
        await held.wait()

        async def mark() -> None:
            async with db.one_statement(writes=True) as session:
                await session.execute(text("UPDATE gate_marks SET v = 'answered' WHERE k = 'm'"))

        marking = asyncio.create_task(mark())
        done, _ = await asyncio.wait({marking}, timeout=1.0)
        assert bool(done) == (not database_url.startswith("sqlite"))
        release.set()
        await asyncio.gather(holder, marking)
        # Committed without a COMMIT of ours: another connection reads it.
        async with other.one_statement(writes=False) as session:
            seen = (await session.execute(text("SELECT v FROM gate_marks"))).scalar_one()
        assert seen == "answered"
    finally:
        async with db.write() as session:
            await session.execute(text("DROP TABLE gate_marks"))
        await other.dispose()
        await db.dispose()


async def test_work_under_way_goes_first_and_cancelled_waiters_give_up_nothing() -> None:
    """A burst: new claims queue; a reservation of an answer already claimed goes first.
    A writer cancelled while waiting (or right after being let in) leaves its place."""
    gate = FairGate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def writer(name: str, *, ahead: bool = False, hold: bool = False) -> None:
        async with gate.enter(ahead=ahead):
            order.append(name)
            if hold:
                await release.wait()

    first = asyncio.create_task(writer("claim 1", hold=True))
    await asyncio.sleep(0)
    later = [asyncio.create_task(writer(f"claim {i}")) for i in (2, 3)]
    gone = asyncio.create_task(writer("claim 4"))
    await asyncio.sleep(0)
    reserve = asyncio.create_task(writer("reserve 1", ahead=True))
    await asyncio.sleep(0)
    gone.cancel()
    release.set()
    await asyncio.gather(first, reserve, *later)
    assert gone.cancelled()
    assert order == ["claim 1", "reserve 1", "claim 2", "claim 3"]
    assert gate.free == 1

    # Let in and cancelled before it ran: the place passes on, nothing is held.
    async with gate.enter():
        waiting = asyncio.create_task(writer("late"))
        after = asyncio.create_task(writer("after"))
        await asyncio.sleep(0)
    waiting.cancel()  # its place was handed to it as the block above ended
    await asyncio.wait_for(after, 5)
    assert waiting.cancelled() and "late" not in order
    assert "after" in order and gate.free == 1
