"""`candor jobs list|run`: the scheduled jobs, from the command line.

    candor jobs list          schedule, last run, last error, next run, and the lease holder
    candor jobs list --json   the same as one JSON object
    candor jobs run NAME      run one job now (outside its schedule and the lease)

A job run from here has no Slack connection: jobs that post to Slack (the digest, the
stale-claim notices) say so and leave their work for the scheduler in `candor serve`.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from bot.settings import ConfigError, Settings


def add_jobs_parser(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="list or run the scheduled jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    listing = jobs_sub.add_parser("list", help="schedules, last runs, next runs, lease holder")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    run = jobs_sub.add_parser("run", help="run one job now")
    run.add_argument("name", help="the job's name, as `candor jobs list` shows it")
    run.add_argument("--json", action="store_true", help="print one JSON object")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


async def run_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from bot.deps import build_deps
    from bot.jobs.runner import JobRunner

    deps = await build_deps(settings)
    try:
        runner = JobRunner(deps)
        if args.jobs_command == "run":
            try:
                outcome = await runner.run_now(args.name)
            except KeyError as exc:
                raise ConfigError(str(exc.args[0])) from None
            if args.json:
                print(json.dumps(outcome.__dict__))
            elif outcome.ok:
                print(f"{outcome.name}: ok ({outcome.result})")
            else:
                print(f"{outcome.name}: failed: {outcome.error}")
            return 0 if outcome.ok else 1
        statuses = await runner.statuses()
        holder = await runner.lease_info()
        now = deps.clock.now()
    finally:
        await deps.close()
    if args.json:
        print(
            json.dumps(
                {
                    "lease": None
                    if holder is None
                    else {
                        "holder": holder.holder,
                        "expires_at": holder.expires_at.isoformat(),
                        "held": holder.held_at(now),
                    },
                    "jobs": [
                        {
                            **{k: v for k, v in s.__dict__.items() if not isinstance(v, datetime)},
                            **{
                                k: v.isoformat()
                                for k, v in s.__dict__.items()
                                if isinstance(v, datetime)
                            },
                        }
                        for s in statuses
                    ],
                },
                indent=2,
            )
        )
        return 0
    if holder is None:
        print("Lease: nobody has run the scheduler yet.")
    elif holder.held_at(now):
        print(f"Lease: held by {holder.holder} until {_when(holder.expires_at)}.")
    else:
        print(f"Lease: free (last held by {holder.holder}, expired {_when(holder.expires_at)}).")
    for s in statuses:
        last = f"{_when(s.last_started_at)} {s.last_status or 'never run'}"
        print(f"\n{s.name}  [{s.cron}]  {s.about}")
        print(f"  last run: {last}   next run: {_when(s.next_run_at)}   runs: {s.runs}")
        if s.last_status == "failed" and s.last_error:
            print(f"  last error: {s.last_error}")
        elif s.last_result:
            print(f"  last result: {s.last_result}")
    return 0
