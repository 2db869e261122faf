"""Running scheduled jobs once across replicas: cron schedules, a lease, recorded runs.

`JobRunner.tick()` is what the in-process APScheduler calls every
`CANDOR_JOBS_TICK_SECONDS` on every replica. Each tick:

1. takes or renews the database lease (`bot.jobs.lease`); a replica that does not hold it
   does nothing more, so jobs run on one replica only, and when the holder dies another
   takes over once its lease expires (`CANDOR_JOBS_LEASE_SECONDS`);
2. runs each job whose next slot (`job_state.next_run_at`, from its cron expression) is
   due. The run first moves `next_run_at` on with `UPDATE ... WHERE next_run_at = :slot`,
   so even two holders overlapping (a job that outlived the lease) run a slot once. Missed
   slots are coalesced: a replica that comes back after a day runs the daily job once.
3. records the outcome: start, end, `ok` or `failed`, and the error as one line. A job that
   raises is logged and recorded and never stops the other jobs, the tick or the bot.

Schedules are five-field cron expressions in settings (`CANDOR_JOBS_*_CRON`, in
`CANDOR_JOBS_TIMEZONE`; `off` disables a job), parsed with APScheduler's `CronTrigger`.
Each job is a plain coroutine taking `Deps` (and through it the injected clock), so tests
call jobs directly and drive `tick()` by advancing the clock. APScheduler 3 cannot share a
job store between schedulers, which is why the schedule state lives in `job_state` and
APScheduler only provides the tick.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.db.engine import Database
from bot.db.job_models import JobStateRow
from bot.deps import Deps
from bot.jobs import lease
from bot.jobs.job import Job
from bot.jobs.lease import LeaseInfo
from bot.jobs.registry import registered_jobs

log = logging.getLogger(__name__)

_ERROR_CHARS = 300

#: Called after each run with (job name, ok); observability counts runs through it.
RunObserver = Callable[[str, bool], None]


@dataclass(frozen=True)
class JobStatus:
    """What `candor jobs list` shows for one job."""

    name: str
    cron: str
    about: str
    next_run_at: datetime | None
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_status: str | None
    last_error: str | None
    last_result: str | None
    last_holder: str | None
    runs: int
    failures: int


@dataclass(frozen=True)
class RunOutcome:
    """How one run went."""

    name: str
    ok: bool
    result: str
    error: str | None = None


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """A `CronTrigger` from a five-field expression (ValueError when it is not one)."""
    return CronTrigger.from_crontab(expression.strip(), timezone=timezone)


def next_fire(expression: str, timezone: str, *, after: datetime) -> datetime:
    """The first time strictly after `after` that `expression` fires, in UTC."""
    start = after.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
    fire: datetime | None = cron_trigger(expression, timezone).get_next_fire_time(None, start)
    if fire is None:  # pragma: no cover - a five-field cron always fires again
        raise ValueError(f"{expression!r} never fires")
    return fire.astimezone(UTC)


def default_holder() -> str:
    """This replica's name in the lease: host, pid and a random suffix (restarts differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _insert(db: Database) -> postgresql.Insert | sqlite.Insert:
    if db.is_sqlite:
        return sqlite.insert(JobStateRow)
    return postgresql.insert(JobStateRow)


class JobRunner:
    """Runs `jobs` on the replica holding the lease; see the module docstring."""

    def __init__(
        self,
        deps: Deps,
        jobs: list[Job] | None = None,
        *,
        holder: str | None = None,
        observer: RunObserver | None = None,
    ) -> None:
        self.deps = deps
        self.jobs = {job.name: job for job in (jobs or registered_jobs(deps.settings))}
        self.holder = holder or default_holder()
        self.observer = observer
        settings = deps.settings.candor
        self.timezone = settings.jobs_timezone
        self.lease_ttl = timedelta(seconds=settings.jobs_lease_seconds)

    @property
    def db(self) -> Database:
        return self.deps.db

    def _now(self) -> datetime:
        return self.deps.clock.now().astimezone(UTC)

    async def tick(self) -> list[RunOutcome]:
        """Renew the lease and run the due jobs; returns what ran (nothing if not holder)."""
        now = self._now()
        if not await lease.acquire(self.db, holder=self.holder, now=now, ttl=self.lease_ttl):
            return []
        outcomes: list[RunOutcome] = []
        for job in self.jobs.values():
            if not job.enabled:
                continue
            slot = await self._due_slot(job, now)
            if slot is None or not await self._claim(job, slot, now):
                continue
            outcomes.append(await self._run(job))
            # Stay the holder while jobs take time; stop if another replica took over.
            now = self._now()
            if not await lease.acquire(self.db, holder=self.holder, now=now, ttl=self.lease_ttl):
                break
        return outcomes

    async def run_now(self, name: str) -> RunOutcome:
        """Run one job at once, outside its schedule and the lease (`candor jobs run`)."""
        job = self.jobs.get(name)
        if job is None:
            known = ", ".join(sorted(self.jobs))
            raise KeyError(f"There is no job called {name!r}; the jobs are {known}.")
        await self._ensure_row(job, self._now())
        async with self.db.write() as session:
            await session.execute(
                update(JobStateRow)
                .where(JobStateRow.name == job.name)
                .values(last_started_at=self._now(), last_holder=self.holder)
            )
        return await self._run(job)

    async def release(self) -> None:
        """Give up the lease (a clean stop), so another replica takes over at once."""
        await lease.release(self.db, holder=self.holder)

    async def statuses(self) -> list[JobStatus]:
        """Every job with its schedule and last run, in registration order."""
        async with self.db.sessions() as session:
            rows = {r.name: r for r in (await session.execute(select(JobStateRow))).scalars()}
        result = []
        for job in self.jobs.values():
            row = rows.get(job.name)
            next_run = _utc(row.next_run_at) if row is not None else None
            if next_run is None and job.enabled:
                next_run = next_fire(job.cron, self.timezone, after=self._now())
            result.append(
                JobStatus(
                    name=job.name,
                    cron=job.cron,
                    about=job.about,
                    next_run_at=next_run if job.enabled else None,
                    last_started_at=_utc(row.last_started_at) if row else None,
                    last_finished_at=_utc(row.last_finished_at) if row else None,
                    last_status=row.last_status if row else None,
                    last_error=row.last_error if row else None,
                    last_result=row.last_result if row else None,
                    last_holder=row.last_holder if row else None,
                    runs=row.runs if row else 0,
                    failures=row.failures if row else 0,
                )
            )
        return result

    async def lease_info(self) -> LeaseInfo | None:
        return await lease.current(self.db)

    # --- internals -------------------------------------------------------------------

    async def _ensure_row(self, job: Job, now: datetime) -> None:
        first = next_fire(job.cron, self.timezone, after=now) if job.enabled else None
        async with self.db.write() as session:
            await session.execute(
                _insert(self.db)
                .values(name=job.name, next_run_at=first, runs=0, failures=0)
                .on_conflict_do_nothing(index_elements=["name"])
            )

    async def _due_slot(self, job: Job, now: datetime) -> datetime | None:
        """The slot to run now, or None; a job seen for the first time waits for its next."""
        async with self.db.sessions() as session:
            row = await session.get(JobStateRow, job.name)
            slot = _utc(row.next_run_at) if row is not None else None
        if row is None or slot is None:
            await self._ensure_row(job, now)
            if row is not None:  # enabled again after `off`: schedule its next slot
                async with self.db.write() as session:
                    await session.execute(
                        update(JobStateRow)
                        .where(JobStateRow.name == job.name, JobStateRow.next_run_at.is_(None))
                        .values(next_run_at=next_fire(job.cron, self.timezone, after=now))
                    )
            return None
        return slot if slot <= now else None

    async def _claim(self, job: Job, slot: datetime, now: datetime) -> bool:
        """Move the job past `slot`; True only for the one caller whose update did it."""
        async with self.db.write() as session:
            result = await session.execute(
                update(JobStateRow)
                .where(JobStateRow.name == job.name, JobStateRow.next_run_at == slot)
                .values(
                    next_run_at=next_fire(job.cron, self.timezone, after=now),
                    last_started_at=now,
                    last_holder=self.holder,
                )
                .execution_options(synchronize_session=False)
            )
        return int(getattr(result, "rowcount", 0) or 0) == 1

    async def _run(self, job: Job) -> RunOutcome:
        try:
            result = await job.run(self.deps)
        except Exception as exc:
            log.exception("Job %s failed", job.name)
            outcome = RunOutcome(job.name, ok=False, result="", error=_one_line(exc))
        else:
            outcome = RunOutcome(job.name, ok=True, result=_one_line(result)[:200])
            log.info("Job %s finished: %s", job.name, outcome.result)
        try:
            await self._record(outcome)
        except Exception:
            log.exception("Could not record the run of job %s", job.name)
        if self.observer is not None:
            self.observer(job.name, outcome.ok)
        return outcome

    async def _record(self, outcome: RunOutcome) -> None:
        values: dict[str, object] = {
            "last_finished_at": self._now(),
            "last_status": "ok" if outcome.ok else "failed",
            "last_error": outcome.error,
            "runs": JobStateRow.runs + 1,
        }
        if outcome.ok:
            values["last_result"] = outcome.result
        else:
            values["failures"] = JobStateRow.failures + 1
        async with self.db.write() as session:
            await session.execute(
                update(JobStateRow).where(JobStateRow.name == outcome.name).values(**values)
            )


def _one_line(value: object) -> str:
    if isinstance(value, BaseException):
        text = f"{type(value).__name__}: {value}" if str(value) else type(value).__name__
    else:
        text = "" if value is None else str(value)
    return " ".join(text.split())[:_ERROR_CHARS]


def build_scheduler(runner: JobRunner) -> AsyncIOScheduler:
    """The in-process APScheduler that ticks `runner`; the caller starts and shuts it down."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(
        runner.tick,
        "interval",
        seconds=runner.deps.settings.candor.jobs_tick_seconds,
        id="candor_jobs_tick",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=60,
    )
    return scheduler
