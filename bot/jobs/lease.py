"""A database lease, so scheduled jobs run on one replica at a time.

One row in `scheduler_leases` names the holder and when its hold expires. `acquire` takes
the lease when it is free, expired or already ours (renewing it), in one guarded statement:

    UPDATE scheduler_leases SET holder = :me, expires_at = :now + ttl
     WHERE name = :name AND (holder = :me OR expires_at <= :now)

and, when there is no row yet, `INSERT ... ON CONFLICT DO NOTHING`. Exactly one of several
replicas racing sees its statement change a row, on Postgres (row locks under READ
COMMITTED re-check the WHERE) and on SQLite (one writer at a time). A replica that dies
holding the lease stops renewing it and is replaced once `expires_at` passes; one that stops
cleanly `release`s it so another takes over at its next tick.

Why not a Postgres advisory lock: it needs one connection held open for as long as the lock
(a pooled connection that is recycled drops it silently), it does not exist on SQLite, and
nobody can see who holds it. The lease row costs one small write per tick and shows its
holder in `candor jobs list`. Times come from the injected clock; replicas' clocks should
agree to well within the lease (NTP does that).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.engine import Database
from bot.db.job_models import SchedulerLeaseRow

#: The lease the scheduler takes (one for all jobs).
SCHEDULER_LEASE = "scheduler"


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds a lease and until when (as `candor jobs list` shows it)."""

    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime

    def held_at(self, now: datetime) -> bool:
        return _utc(self.expires_at) > now


def _utc(value: datetime) -> datetime:
    """SQLite hands timestamps back naive; they were stored in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _insert(session: AsyncSession) -> postgresql.Insert | sqlite.Insert:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(SchedulerLeaseRow)
    return sqlite.insert(SchedulerLeaseRow)


async def acquire(
    db: Database, *, holder: str, now: datetime, ttl: timedelta, name: str = SCHEDULER_LEASE
) -> bool:
    """Take or renew the lease for `ttl`; True when `holder` holds it afterwards."""
    expires = now + ttl
    async with db.write() as session:
        renewed = await session.execute(
            update(SchedulerLeaseRow)
            .where(
                SchedulerLeaseRow.name == name,
                (SchedulerLeaseRow.holder == holder) | (SchedulerLeaseRow.expires_at <= now),
            )
            .values(
                holder=holder,
                expires_at=expires,
                # Keep the first acquisition time while we renew our own lease.
                acquired_at=_acquired_at(holder, now),
            )
            .execution_options(synchronize_session=False)
        )
        if int(getattr(renewed, "rowcount", 0) or 0) == 1:
            return True
        created = await session.execute(
            _insert(session)
            .values(name=name, holder=holder, acquired_at=now, expires_at=expires)
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(SchedulerLeaseRow.name)
        )
        return created.first() is not None


def _acquired_at(holder: str, now: datetime) -> object:
    from sqlalchemy import case

    return case(
        (SchedulerLeaseRow.holder == holder, SchedulerLeaseRow.acquired_at),
        else_=now,
    )


async def release(db: Database, *, holder: str, name: str = SCHEDULER_LEASE) -> bool:
    """Give the lease up (on a clean stop) so another replica takes it at once."""
    async with db.write() as session:
        result = await session.execute(
            delete(SchedulerLeaseRow).where(
                SchedulerLeaseRow.name == name, SchedulerLeaseRow.holder == holder
            )
        )
    return int(getattr(result, "rowcount", 0) or 0) == 1


async def current(db: Database, *, name: str = SCHEDULER_LEASE) -> LeaseInfo | None:
    """The lease row (expired or not), or None when nobody ever took it."""
    async with db.sessions() as session:
        row = (
            await session.execute(select(SchedulerLeaseRow).where(SchedulerLeaseRow.name == name))
        ).scalar_one_or_none()
    if row is None:
        return None
    return LeaseInfo(
        name=row.name,
        holder=row.holder,
        acquired_at=_utc(row.acquired_at),
        expires_at=_utc(row.expires_at),
    )
