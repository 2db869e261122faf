"""SQLite for SQLAlchemy's asyncio engine, one thread hop per statement.

SQLAlchemy's `sqlite+aiosqlite` dialect drives an aiosqlite connection: every cursor,
`__aenter__`, `execute`, `fetchall` and `close` is a trip to the connection's thread and
back (queue, wake the thread, `call_soon_threadsafe`, wake the loop). That is four trips
per statement, about 60-70 µs of CPU each on this machine, and ~57 per answer: more CPU
than the statements themselves.

`connect()` returns a connection with the part of aiosqlite's interface the dialect uses
(it is passed as the engine's `async_creator`, so the dialect, its SQL and its error types
are unchanged). Each statement is one trip: the thread runs the cursor, the statement and
the fetch together and hands back the rows; `fetchall`, `close` and the rest then answer
from them. A rollback with no transaction open (the pool's reset of a committed
connection) makes no trip at all. Statements run on the connection's own thread, so a
statement waiting for another process's write lock never blocks the event loop.

Inside `inline()` (the hot path's short transactions: `Database.write(quick=True)`,
`Database.write_statements`, `Database.one_statement`) a
statement runs on the event loop's thread instead, with no trip at all: the claim, the
reservation, the bill and the stored turns are a few indexed rows each, tens of
microseconds, less than the trip itself. It runs with a busy timeout of 0, so it never
waits for a lock on the loop: if another connection (another process, a job outside the
writer gate) holds the lock, SQLite refuses at once, nothing was changed, and the
statement runs again on the thread, waiting as long as the busy timeout allows. COMMIT
always goes to the thread: it writes the WAL and may checkpoint, which can fsync.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = object()

_INLINE: ContextVar[bool] = ContextVar("candor_sqlite_inline", default=False)
#: What SQLite answers when another connection holds the lock it needs.
_LOCKED = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


@contextmanager
def inline() -> Iterator[None]:
    """Statements run within this block run on the event loop's thread (see the module)."""
    token = _INLINE.set(True)
    try:
        yield
    finally:
        _INLINE.reset(token)


class _Worker:
    """The connection's thread: runs one function at a time, resolving a loop future."""

    def __init__(self) -> None:
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="candor-sqlite", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            future, function = item
            try:
                result = function()
            except BaseException as exc:  # handed to the awaiting task
                if future is not None:
                    future.get_loop().call_soon_threadsafe(_set_exception, future, exc)
            else:
                if future is not None:
                    future.get_loop().call_soon_threadsafe(_set_result, future, result)

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        """aiosqlite's `_tx` interface (SQLAlchemy's isolation-level setter uses it)."""
        self._queue.put(item)

    async def run(self, function: Callable[[], T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((future, function))
        return await future

    def stop(self) -> None:
        self._queue.put(_STOP)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class Cursor:
    """A cursor whose statement, fetch and close are one trip; rows are kept here."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        conn = self._connection.raw

        def run() -> tuple[Any, int, int | None, list[Any]]:
            cursor = conn.cursor()
            try:
                cursor.execute(sql, () if parameters is None else parameters)
                rows = cursor.fetchall() if cursor.description else []
                return cursor.description, cursor.rowcount, cursor.lastrowid, rows
            finally:
                cursor.close()

        try:
            if _INLINE.get():
                try:
                    result = self._connection.run_inline(run)
                except sqlite3.OperationalError as error:
                    if getattr(error, "sqlite_errorcode", 0) & 0xFF not in _LOCKED:
                        raise
                    result = await self._connection.run(run)  # waits for the lock, off the loop
            else:
                result = await self._connection.run(run)
        finally:
            if sql.lstrip()[:19].upper() == "PRAGMA BUSY_TIMEOUT":
                self._connection.busy_ms = None  # the statement set it: unknown here
        self.description, self.rowcount, self.lastrowid, self._rows = result
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Cursor:
        conn = self._connection.raw
        rows = list(parameters)

        def run() -> tuple[Any, int, int | None]:
            cursor = conn.cursor()
            try:
                cursor.executemany(sql, rows)
                return cursor.description, cursor.rowcount, cursor.lastrowid
            finally:
                cursor.close()

        self.description, self.rowcount, self.lastrowid = await self._connection.run(run)
        self._rows = []
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = self.arraysize if size is None else size
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def close(self) -> None:
        self._rows = []


class Connection:
    """The subset of `aiosqlite.Connection` SQLAlchemy's dialect drives; see the module."""

    def __init__(self, worker: _Worker, raw: sqlite3.Connection, busy_timeout: float) -> None:
        self._tx = worker
        self.raw = raw
        #: aiosqlite's names for the sqlite3 connection (the dialect reads both).
        self._connection: sqlite3.Connection | None = raw
        self._conn = raw
        self._busy_timeout_ms = int(busy_timeout * 1000)
        #: The connection's busy timeout now (None: unknown, set it before the next use).
        self.busy_ms: int | None = self._busy_timeout_ms

    def _set_busy_ms(self, ms: int) -> None:
        if self.busy_ms != ms:
            self.raw.execute(f"PRAGMA busy_timeout = {ms}")
            self.busy_ms = ms

    async def run(self, function: Callable[[], T]) -> T:
        """`function` on the connection's thread, where waiting for a lock is harmless."""
        if self._connection is None:
            raise ValueError("no active connection")

        @functools.wraps(function)
        def waiting() -> T:
            self._set_busy_ms(self._busy_timeout_ms)
            return function()

        return await self._tx.run(waiting)

    def run_inline(self, function: Callable[[], T]) -> T:
        """`function` here, on the event loop's thread, refusing to wait for any lock."""
        if self._connection is None:
            raise ValueError("no active connection")
        self._set_busy_ms(0)
        return function()

    @property
    def isolation_level(self) -> str | None:
        return self.raw.isolation_level

    def cursor(self) -> Cursor:
        return Cursor(self)

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        return await Cursor(self).execute(sql, parameters)

    async def commit(self) -> None:
        await self.run(self.raw.commit)

    async def rollback(self) -> None:
        if not self.raw.in_transaction:
            return  # nothing to undo: the pool's reset after a commit costs no trip
        await self.run(self.raw.rollback)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        raw = self.raw
        await self.run(lambda: raw.create_function(*args, **kwargs))

    async def close(self) -> None:
        if self._connection is None:
            return
        raw = self.raw
        try:
            await self._tx.run(raw.close)
        finally:
            self._connection = None
            self._tx.stop()

    def stop(self) -> None:
        """Close without waiting (SQLAlchemy's terminate of an invalidated connection)."""
        if self._connection is None:
            return
        raw = self.raw
        self._connection = None
        self._tx.put_nowait((None, raw.close))
        self._tx.stop()


async def connect(database: str, *, busy_timeout: float = 30.0) -> Connection:
    """Open `database` (a path or ":memory:") on a thread of its own."""
    worker = _Worker()
    try:
        raw = await worker.run(
            lambda: sqlite3.connect(database, timeout=busy_timeout, check_same_thread=False)
        )
    except BaseException:
        worker.stop()
        raise
    return Connection(worker, raw, busy_timeout)
