"""The jobs Candor schedules, each with its cron setting.

| job                  | setting                          | default       |
|----------------------|----------------------------------|---------------|
| `sweep_stale_claims` | `CANDOR_JOBS_STALE_CLAIMS_CRON`  | every minute  |
| `release_stale_holds`| `CANDOR_JOBS_RELEASE_HOLDS_CRON` | every 5 min   |
| `budget_alerts`      | `CANDOR_JOBS_BUDGET_ALERTS_CRON` | every 15 min  |
| `usage_digest`       | `CANDOR_JOBS_USAGE_DIGEST_CRON`  | 09:00 daily   |
| `retention`          | `CANDOR_JOBS_RETENTION_CRON`     | 03:30 daily   |
| `kb_sync`            | `CANDOR_JOBS_KB_SYNC_CRON`       | hourly        |
| `review_digest`      | `CANDOR_JOBS_REVIEW_DIGEST_CRON` | Mon 09:00     |
| `ask_human_reminders`| `CANDOR_JOBS_ASK_HUMAN_REMINDERS_CRON` | every 10 min |
"""

from __future__ import annotations

from bot.deps import Deps
from bot.jobs.digests import budget_alerts, usage_digest
from bot.jobs.job import Job
from bot.jobs.review_jobs import ask_human_reminders, review_digest
from bot.jobs.scheduler import (
    prune_events,
    prune_history,
    release_stale_holds,
    sweep_stale_claims,
)
from bot.jobs.sync import kb_sync
from bot.settings import Settings


async def retention(deps: Deps) -> str:
    """Prune old event claims and, when history retention is on, old conversation turns."""
    events = await prune_events(deps)
    turns = await prune_history(deps)
    return f"{events} event claims, {turns} turns pruned"


async def _sweep(deps: Deps) -> str:
    return f"{await sweep_stale_claims(deps)} claims reported"


async def _holds(deps: Deps) -> str:
    return f"{await release_stale_holds(deps)} holds released"


def registered_jobs(settings: Settings) -> list[Job]:
    """Every job with the schedule its setting gives it."""
    c = settings.candor
    return [
        Job(
            "sweep_stale_claims",
            _sweep,
            c.jobs_stale_claims_cron,
            "tell users in the thread when their message was never answered",
        ),
        Job(
            "release_stale_holds",
            _holds,
            c.jobs_release_holds_cron,
            "return budget held by replies that never finished",
        ),
        Job(
            "budget_alerts",
            budget_alerts,
            c.jobs_budget_alerts_cron,
            "alert admins about users past the warning threshold not yet alerted",
        ),
        Job(
            "usage_digest",
            usage_digest,
            c.jobs_usage_digest_cron,
            "post top users, spend vs budgets and the chart to the admin channel",
        ),
        Job(
            "retention",
            retention,
            c.jobs_retention_cron,
            "prune old event claims (and old turns when history retention is on)",
        ),
        Job(
            "kb_sync",
            kb_sync,
            c.jobs_kb_sync_cron,
            "re-ingest knowledge sources registered with --sync (only what changed)",
        ),
        Job(
            "review_digest",
            review_digest,
            c.jobs_review_digest_cron,
            "post the week's flagged and 👎 answers and their review status to reviewers",
        ),
        Job(
            "ask_human_reminders",
            ask_human_reminders,
            c.jobs_ask_human_reminders_cron,
            "remind the thread once when an Ask a human stays unanswered",
        ),
    ]
