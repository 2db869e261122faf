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
connection) makes no trip at all. Statements still run on the connection's own thread, so
a statement waiting for another process's write lock never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = object()


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

        self.description, self.rowcount, self.lastrowid, self._rows = await self._connection.run(
            run
        )
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

    def __init__(self, worker: _Worker, raw: sqlite3.Connection) -> None:
        self._tx = worker
        self.raw = raw
        #: aiosqlite's names for the sqlite3 connection (the dialect reads both).
        self._connection: sqlite3.Connection | None = raw
        self._conn = raw

    async def run(self, function: Callable[[], T]) -> T:
        if self._connection is None:
            raise ValueError("no active connection")
        return await self._tx.run(function)

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
    return Connection(worker, raw)
