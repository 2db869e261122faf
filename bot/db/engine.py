"""Engine and session factory, and the migration runner.

`Database` wraps one async engine and its session factory. It is built once by
`bot.deps.build_deps` (or by a test) and passed down; nothing here runs at import time.
SQLite gets WAL and a busy timeout so concurrent writers wait instead of failing.

`ensure_ready` is the startup check: the database answers, and its schema is the one this
code was written for (migrating it first when asked, as the embedded SQLite file is).
Anything else is a `DatabaseNotReady` whose sentence names `DATABASE_URL` or
`candor db upgrade`, so a process never starts half-working.

Alembic (~12 MiB and ~0.3 s of imports, with Mako and Pygments) is imported only to
migrate: `current_revision` reads the version table with SQLAlchemy and `head_revision`
the migration files, so a process whose database is already current never loads it.
"""

from __future__ import annotations

import functools
import logging
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, exc, inspect, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.db import sqlite_driver
from bot.errors import DatabaseNotReady
from bot.gate import FairGate

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)

#: Seconds to wait for Postgres to accept a connection (asyncpg's own default is 60).
CONNECT_TIMEOUT_SECONDS = 10
#: Seconds a SQLite statement waits for another process's write lock.
SQLITE_BUSY_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Database:
    """An async engine plus its session factory.

    `write()` opens a transaction for writing once the process's writer gate lets it in,
    in the order the writers came (except that `ahead=True`, work already under way that
    an answer waits on, goes before new work: `bot.gate`):
    - On SQLite the gate lets one writer in: SQLite allows one writer at a time, and its
      busy handler backs off with sleeps of up to 100 ms, so hundreds of concurrent
      writers queueing inside SQLite take seconds each; queueing them on an `asyncio`
      lock takes milliseconds.
    - On Postgres it lets `DATABASE_WRITERS` (default 4) in. Without it, a burst of
      messages interleaves everyone's claims and reservations on the one event loop, so
      all of them finish near the end of the burst, and their LLM calls start, and end,
      together again: the burst never spreads out. First come, first served, the first
      messages of a burst reach the model early, and a burst becomes a stream (measured
      at 20 in flight: overhead p50 74-86 ms without the gate, 32-42 ms with one writer;
      fewer writers trade the tail and throughput for the median, see bench/README.md).
    The gate is per process, not state a second replica would miss.
    """

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    write_gate: FairGate = field(compare=False)

    @asynccontextmanager
    async def write(
        self, *, quick: bool = False, ahead: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """A write transaction, once the gate lets it in. `quick`: a few indexed rows,
        nothing slow (see `quick`). `ahead`: it finishes work already under way that an
        answer waits on (its reservation, a bill before it is shown), so it goes before
        new work (`bot.gate`)."""
        with self.quick() if quick else nullcontext():
            async with self.write_gate.enter(ahead=ahead), self.sessions.begin() as session:
                yield session

    @asynccontextmanager
    async def write_statements(self, *, ahead: bool = False) -> AsyncIterator[AsyncConnection]:
        """`write(quick=True)` for Core statements only (an answer's bill and stored
        rows): a bare connection in a transaction, without an ORM session around it
        (~50-100 µs of CPU less per transaction, measured)."""
        with self.quick():
            async with self.write_gate.enter(ahead=ahead), self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def one_statement(
        self, *, writes: bool, ahead: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A connection for short Core statements that need no transaction around them:
        one write (an INSERT or UPDATE of one row by its key, or the ledger's hold, one
        function call on Postgres), or lookups that need not agree with each other. On
        Postgres each statement commits by itself: one round trip instead of BEGIN, the
        statement and COMMIT or ROLLBACK, and a write takes no place in the writer gate
        (a single statement holds its row lock only while it runs). On SQLite they run
        quick (`quick`), and writes are one transaction through the gate (`ahead` as in
        `write`): SQLite's one writer is what the gate is for, and what is one statement
        on Postgres may be several there. `lookups` is the same for ORM reads."""
        if not self.is_sqlite:
            async with self._autocommit.connect() as conn:
                yield conn
        elif writes:
            async with self.write_statements(ahead=ahead) as conn:
                yield conn
        else:
            with self.quick():
                async with self.engine.connect() as conn:
                    yield conn

    @asynccontextmanager
    async def lookups(self) -> AsyncIterator[AsyncSession]:
        """A session for ORM reads that need not agree with each other, as
        `one_statement(writes=False)`: on Postgres each commits by itself, on SQLite they
        run quick."""
        if not self.is_sqlite:
            async with self.sessions(bind=self._autocommit) as session:
                yield session
        else:
            with self.quick():
                async with self.sessions() as session:
                    yield session

    @functools.cached_property
    def _autocommit(self) -> AsyncEngine:
        return self.engine.execution_options(isolation_level="AUTOCOMMIT")

    def quick(self) -> AbstractContextManager[None]:
        """Within it, SQLite statements run on the event loop's thread, not the
        connection's (`bot.db.sqlite_driver.inline`): for an answer's own short
        statements, where the trip to the thread and back costs more than the statement.
        Never around anything that reads or writes many rows. Nothing changes on Postgres."""
        return sqlite_driver.inline() if self.is_sqlite else nullcontext()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def dispose(self) -> None:
        await self.engine.dispose()


#: Postgres write transactions one process runs at once (`DATABASE_WRITERS`).
DEFAULT_WRITERS = 4


def open_database(url: str, *, echo: bool = False, writers: int = DEFAULT_WRITERS) -> Database:
    """Create the engine for `url` (creating the SQLite file's folder if needed).

    `writers`: write transactions let in at once on Postgres (`Database.write`); SQLite
    always lets one in."""
    kwargs: dict[str, Any] = {"echo": echo}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if "?" in path:  # URL options (uri=true, mode=ro...): aiosqlite reads them
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
        else:
            # One thread trip per statement instead of aiosqlite's four (bot.db.sqlite_driver).
            kwargs["async_creator"] = functools.partial(
                sqlite_driver.connect, path or ":memory:", busy_timeout=SQLITE_BUSY_TIMEOUT_SECONDS
            )
        kwargs["pool_timeout"] = 120
    else:
        kwargs["pool_size"] = 20
        kwargs["max_overflow"] = 20
        # The connection used last is reused first, so the busy ones stay busy and the
        # others sit idle (and get pinged, `_ping_when_idle`, before their next use).
        kwargs["pool_use_lifo"] = True
        kwargs["pool_timeout"] = 120
        kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT_SECONDS}
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        _ping_when_idle(engine)
    return Database(
        engine=engine,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        write_gate=FairGate(1 if url.startswith("sqlite") else max(1, writers)),
    )


#: A pooled connection idle longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0
_RETURNED = "candor_returned_at"


def _ping_when_idle(engine: AsyncEngine, now: Callable[[], float] = time.monotonic) -> None:
    """Ping a pooled Postgres connection before use only when it sat idle for a while.

    SQLAlchemy's `pool_pre_ping` pings on every checkout; with asyncpg outside a
    transaction a ping is BEGIN, a statement and ROLLBACK: three round trips before each
    of an answer's four transactions, a third of all its trips. A connection that died
    while idle (Postgres restarted, a proxy or firewall dropped it) is still pinged and
    replaced before use, and the whole pool with it, as `pool_pre_ping` does; one that
    was in use less than `PING_AFTER_IDLE_SECONDS` ago is taken as alive. If Postgres
    restarts within that second, the next statement on such a connection fails once and
    SQLAlchemy drops the pool; the bill of an answer is then settled again on a fresh
    connection (`ConversationManager._settle_and_store`), so no spend is lost.
    """

    def returned(_dbapi: Any, record: Any) -> None:
        record.info[_RETURNED] = now()

    def checkout(dbapi: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get(_RETURNED)
        if last is None or now() - last < PING_AFTER_IDLE_SECONDS:
            return  # new, or in use a moment ago
        try:
            dbapi.ping()
        except Exception as error:
            raise exc.InvalidatePoolError(f"ping failed: {type(error).__name__}") from None

    event.listen(engine.sync_engine, "connect", returned)
    event.listen(engine.sync_engine, "checkin", returned)
    event.listen(engine.sync_engine, "checkout", checkout)


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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    """Apply migrations up to `revision` on `db`."""

    from alembic import command

    def run(sync_conn: Connection) -> None:
        command.upgrade(alembic_config(sync_conn), revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def current_revision(db: Database) -> str | None:
    """The revision(s) `db` is at, as Alembic records them (None: no Candor tables yet)."""

    def read(sync_conn: Connection) -> str | None:
        # What Alembic's MigrationContext.get_current_heads() reads, without importing it.
        if not inspect(sync_conn).has_table(VERSION_TABLE):
            return None
        heads = sync_conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
        return ", ".join(sorted(heads)) or None

    async with db.engine.connect() as conn:
        return await conn.run_sync(read)


#: Alembic's default version table, which bot/db/migrations/env.py keeps.
VERSION_TABLE = "alembic_version"

#: `revision = "0012_daily"` / `down_revision = None` at the start of a line.
_ASSIGNED = re.compile(r"^(revision|down_revision)\b[^=\n]*=\s*(?:[\"']([^\"']+)[\"']|None)", re.M)


@functools.cache
def _head_from_files() -> str | None:
    """The one revision no migration file revises, or None when the files do not say
    plainly (then Alembic decides)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found: dict[str, str | None] = {}
        for match in _ASSIGNED.finditer(path.read_text(encoding="utf-8")):
            found[match[1]] = match[2]
        revision, down = found.get("revision"), found.get("down_revision")
        if revision is None:
            return None
        revisions.add(revision)
        if down is not None:
            revised.add(down)
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def head_revision() -> str:
    """The revision this code's migrations end at."""
    if head := _head_from_files():
        return head
    from alembic.script import ScriptDirectory

    alembic_head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert alembic_head is not None, "no migrations"
    return alembic_head


def _known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


async def ensure_ready(db: Database, *, migrate: bool) -> None:
    """Check `db` answers and is at this code's revision; migrate it first if `migrate`.

    Raises `DatabaseNotReady` with one sentence naming `DATABASE_URL` or the command to run.
    """
    where = describe_url(db.engine.url.render_as_string(hide_password=True))
    try:
        current = await current_revision(db)
        head = head_revision()
        if current == head:
            return
        if current is not None and not all(_known(r) for r in current.split(", ")):
            raise DatabaseNotReady(
                f"unknown revision {current}",
                user_message=(
                    f"The database at DATABASE_URL ({where}) is at revision {current}, which "
                    "this version of Candor does not know (a newer Candor migrated it); "
                    "upgrade Candor or point DATABASE_URL at another database."
                ),
            )
        if migrate:
            await upgrade(db)
            return
    except DatabaseNotReady:
        raise
    except Exception as error:
        raise database_error(error, where, sqlite=db.is_sqlite) from None
    state = "has no Candor tables yet" if current is None else f"is at revision {current}"
    raise DatabaseNotReady(
        f"revision {current} != {head}",
        user_message=(
            f"The database at DATABASE_URL ({where}) {state} and Candor needs {head}; "
            "run `candor db upgrade`."
        ),
    )


def describe_url(url: str) -> str:
    """Where a database URL points, without its password: `host:port/name` or the file."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        return "an unreadable URL"
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or "memory"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.host or 'localhost'}{port}/{parsed.database or ''}"


def database_error(error: BaseException, where: str, *, sqlite: bool = False) -> DatabaseNotReady:
    """One sentence naming DATABASE_URL for a failure to open or read the database."""
    log.debug("Database check failed", exc_info=error)
    reason, advice = _reason(error, sqlite=sqlite)
    return DatabaseNotReady(
        f"{type(error).__name__} at {where}",
        user_message=f"Candor cannot use the database at DATABASE_URL ({where}): {reason}; {advice}.",
    )


def _reason(error: BaseException, *, sqlite: bool) -> tuple[str, str]:
    """Why the database could not be used, and what to do, in words (never raw text)."""
    fix = "start it or fix DATABASE_URL"
    inner = error.orig if isinstance(error, exc.DBAPIError) and error.orig else error
    # asyncpg's errors arrive wrapped by the SQLAlchemy adapter; the original is its cause.
    for candidate in (inner, inner.__cause__, error.__cause__):
        name = type(candidate).__name__ if candidate is not None else ""
        if name == "InvalidCatalogNameError":
            return "that database does not exist", "create it or fix DATABASE_URL"
        if name in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
            return "it rejected the user name or password", "fix the credentials in DATABASE_URL"
    # An Alembic error comes only from Alembic, which is then imported (it is not, otherwise).
    alembic_util = sys.modules.get("alembic.util")
    if alembic_util is not None and isinstance(error, alembic_util.CommandError):
        return "its migration history does not match this version of Candor", fix
    if sqlite:
        return "the file cannot be created or opened", "fix the path in DATABASE_URL"
    if isinstance(inner, ConnectionRefusedError) or "refused" in str(inner).lower():
        return "the connection was refused", fix
    if isinstance(inner, socket.gaierror):
        return "its host name does not resolve", "fix the host in DATABASE_URL"
    if isinstance(inner, TimeoutError):
        return "it did not answer in time", fix
    if isinstance(inner, OSError):
        return "it could not be reached", fix
    return "it could not be read", fix
