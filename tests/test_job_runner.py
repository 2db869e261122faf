"""The job runner: once across replicas (a database lease), takeover after expiry, cron
slots, failing jobs recorded without stopping the others, and `candor jobs`."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.cli.main import main
from bot.clock import FixedClock
from bot.db.engine import Database, open_database
from bot.db.job_models import JobStateRow
from bot.db.models import ProcessedEventRow
from bot.deps import Deps
from bot.jobs import lease
from bot.jobs.job import Job
from bot.jobs.registry import registered_jobs
from bot.jobs.runner import JobRunner, build_scheduler, next_fire


class Counter:
    """A job that counts its runs, and lets two runs overlap (it yields to the loop)."""

    def __init__(self) -> None:
        self.runs: list[datetime] = []

    async def __call__(self, deps: Deps) -> str:
        await asyncio.sleep(0)
        self.runs.append(deps.clock.now())
        return f"run {len(self.runs)}"


@pytest.fixture
async def replica_db(deps: Deps, database_url: str) -> AsyncIterator[Database]:
    """A second replica's own connection pool to the same database (on Postgres; SQLite
    is one file with one writer, where the runners share the pool)."""
    if deps.db.is_sqlite:
        yield deps.db
        return
    other = open_database(database_url)
    yield other
    await other.dispose()


def replica(deps: Deps, db: Database, job: Job, name: str) -> JobRunner:
    return JobRunner(dataclasses.replace(deps, db=db), [job], holder=name)


async def state(deps: Deps, name: str) -> JobStateRow:
    async with deps.db.sessions() as session:
        row = (
            await session.execute(select(JobStateRow).where(JobStateRow.name == name))
        ).scalar_one()
    return row


async def test_two_schedulers_on_one_database_run_a_due_job_exactly_once(
    deps: Deps, replica_db: Database, clock: FixedClock
) -> None:
    counter = Counter()
    job = Job("count", counter, "* * * * *", "counts")
    a = replica(deps, deps.db, job, "replica-a")
    b = replica(deps, replica_db, job, "replica-b")

    await asyncio.gather(a.tick(), b.tick())  # first sight: schedules the next minute
    assert counter.runs == []
    for _ in range(5):
        clock.advance(minutes=1)
        await asyncio.gather(a.tick(), b.tick(), a.tick(), b.tick())

    assert len(counter.runs) == 5
    row = await state(deps, "count")
    assert row.runs == 5 and row.last_status == "ok"
    holder = await lease.current(deps.db)
    assert holder is not None and row.last_holder == holder.holder


async def test_a_slot_runs_once_even_when_two_holders_overlap(
    deps: Deps, replica_db: Database, clock: FixedClock
) -> None:
    # A job that outlives the lease: the lease may pass to another replica mid-run, and
    # both then believe they hold it. The slot claim still lets one of them run it.
    counter = Counter()
    job = Job("count", counter, "* * * * *", "counts")
    a = replica(deps, deps.db, job, "replica-a")
    b = replica(deps, replica_db, job, "replica-b")
    await a.tick()
    clock.advance(minutes=1)
    slot = (await state(deps, "count")).next_run_at
    assert slot is not None

    won = await asyncio.gather(
        a._claim(job, slot.replace(tzinfo=UTC), clock.now()),
        b._claim(job, slot.replace(tzinfo=UTC), clock.now()),
    )
    assert sorted(won) == [False, True]


async def test_when_the_holder_stops_another_replica_takes_over_after_expiry(
    deps: Deps, replica_db: Database, clock: FixedClock
) -> None:
    counter = Counter()
    job = Job("count", counter, "* * * * *", "counts")
    a = replica(deps, deps.db, job, "replica-a")
    b = replica(deps, replica_db, job, "replica-b")
    ttl = deps.settings.candor.jobs_lease_seconds
    await a.tick()
    await b.tick()
    clock.advance(minutes=1)
    await a.tick()
    assert len(counter.runs) == 1

    # replica-a dies without a word: its lease still stands for `ttl` seconds.
    clock.advance(seconds=ttl - 30)
    assert await b.tick() == []
    assert len(counter.runs) == 1
    clock.advance(seconds=31)
    [outcome] = await b.tick()

    assert outcome.ok and len(counter.runs) == 2
    holder = await lease.current(deps.db)
    assert holder is not None and holder.holder == "replica-b"
    assert (await state(deps, "count")).last_holder == "replica-b"


async def test_a_clean_stop_hands_the_lease_over_at_once(
    deps: Deps, replica_db: Database, clock: FixedClock
) -> None:
    counter = Counter()
    job = Job("count", counter, "* * * * *", "counts")
    a = replica(deps, deps.db, job, "replica-a")
    b = replica(deps, replica_db, job, "replica-b")
    await a.tick()
    clock.advance(minutes=1)
    await a.release()

    [outcome] = await b.tick()

    assert outcome.ok
    holder = await lease.current(deps.db)
    assert holder is not None and holder.holder == "replica-b"


async def test_a_failing_job_is_recorded_and_never_stops_the_others(
    deps: Deps, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(_deps: Deps) -> None:
        raise RuntimeError("the digest channel is archived")

    counter = Counter()
    runner = JobRunner(
        deps,
        [Job("broken", broken, "* * * * *", "fails"), Job("count", counter, "* * * * *", "x")],
        holder="replica-a",
    )
    seen: list[tuple[str, bool]] = []
    runner.observer = lambda name, ok: seen.append((name, ok))
    await runner.tick()
    clock.advance(minutes=1)

    outcomes = await runner.tick()

    assert [(o.name, o.ok) for o in outcomes] == [("broken", False), ("count", True)]
    assert seen == [("broken", False), ("count", True)]
    broken_state = await state(deps, "broken")
    assert broken_state.last_status == "failed" and broken_state.failures == 1
    assert broken_state.last_error == "RuntimeError: the digest channel is archived"
    assert any("Job broken failed" in r.getMessage() for r in caplog.records)
    # It is due again at its next slot, like any other job.
    clock.advance(minutes=1)
    assert [o.name for o in await runner.tick()] == ["broken", "count"]


async def test_missed_slots_are_coalesced_and_schedules_follow_cron(
    deps: Deps, clock: FixedClock
) -> None:
    counter = Counter()
    runner = JobRunner(deps, [Job("daily", counter, "0 9 * * *", "daily")], holder="a")
    await runner.tick()  # the clock stands at 09:00 on 2026-11-26: next slot is tomorrow
    assert (await runner.statuses())[0].next_run_at == datetime(2026, 11, 27, 9, tzinfo=UTC)

    clock.advance(days=3)  # the bot was down for three days
    await runner.tick()
    await runner.tick()

    assert len(counter.runs) == 1
    assert (await runner.statuses())[0].next_run_at == datetime(2026, 11, 30, 9, tzinfo=UTC)


def test_next_fire_is_strictly_after_and_in_the_jobs_time_zone() -> None:
    at_nine = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert next_fire("0 9 * * *", "UTC", after=at_nine) == at_nine + timedelta(days=1)
    # 09:00 in Berlin is 08:00 UTC in winter.
    assert next_fire("0 9 * * *", "Europe/Berlin", after=at_nine) == datetime(
        2026, 11, 27, 8, tzinfo=UTC
    )


def test_every_job_is_registered_and_the_scheduler_only_ticks(deps: Deps) -> None:
    names = [job.name for job in registered_jobs(deps.settings)]
    assert names == [
        "sweep_stale_claims",
        "release_stale_holds",
        "budget_alerts",
        "usage_digest",
        "retention",
        "kb_sync",
        "review_digest",
        "ask_human_reminders",
    ]
    scheduler = build_scheduler(JobRunner(deps))
    assert [job.id for job in scheduler.get_jobs()] == ["candor_jobs_tick"]


async def test_retention_job_prunes_old_claims(deps: Deps, clock: FixedClock) -> None:
    async with deps.db.write() as session:
        session.add(ProcessedEventRow(event_id="old", received_at=clock.now() - timedelta(days=8)))
        session.add(ProcessedEventRow(event_id="new", received_at=clock.now() - timedelta(days=1)))
    runner = JobRunner(deps, holder="a")

    outcome = await runner.run_now("retention")

    assert outcome.ok and outcome.result == "1 event claims, 0 turns pruned"
    async with deps.db.sessions() as session:
        left = (await session.execute(select(ProcessedEventRow.event_id))).scalars().all()
    assert left == ["new"]


async def test_candor_jobs_list_and_run(
    deps: Deps, capsys: pytest.CaptureFixture[str], clock: FixedClock
) -> None:
    await JobRunner(deps, holder="replica-a").tick()

    # The CLI builds its own Deps from the environment the `settings` fixture set.
    assert await asyncio.to_thread(main, ["jobs", "run", "retention"]) == 0
    assert "retention: ok (0 event claims, 0 turns pruned)" in capsys.readouterr().out

    assert await asyncio.to_thread(main, ["jobs", "list"]) == 0
    out = capsys.readouterr().out
    assert "Lease: " in out and "replica-a" in out
    assert "usage_digest  [0 9 * * *]" in out
    assert "next run: 2026-11-27 09:00:00 UTC" in out

    assert await asyncio.to_thread(main, ["jobs", "run", "nope"]) == 1
    assert "There is no job called 'nope'" in capsys.readouterr().err


def test_a_bad_cron_setting_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.settings import ConfigError, load_settings

    monkeypatch.setenv("CANDOR_JOBS_USAGE_DIGEST_CRON", "every day at nine")
    with pytest.raises(ConfigError) as err:
        load_settings(None)
    assert str(err.value).startswith(
        "CANDOR_JOBS_USAGE_DIGEST_CRON has an invalid value: it must be a five-field cron"
    )
