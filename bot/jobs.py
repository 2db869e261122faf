"""Periodic work on APScheduler: stale budget holds, event and history retention.

`build_scheduler(deps)` returns an `AsyncIOScheduler` (not started) with:

- `release_stale_holds` every 5 minutes: a reply that crashed between reserve and settle
  leaves money held; after 15 minutes the hold is returned (a late settle still bills).
- `prune_events` daily: processed-event claims older than `CANDOR_EVENT_RETENTION_DAYS`
  (Slack stops retrying after minutes; a week is generous).
- `prune_history` daily, when `CANDOR_HISTORY_RETENTION_DAYS` > 0: conversation turns
  older than that are deleted (answers and the spend ledger are kept).

Every job is idempotent, so several replicas running them is harmless; each job function
is a plain coroutine that tests call directly with an injected clock.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import delete

from bot.db import repo
from bot.db.models import ConversationTurnRow
from bot.deps import Deps

log = logging.getLogger(__name__)


async def release_stale_holds(deps: Deps) -> int:
    from bot.spend import SpendLedger

    if not isinstance(deps.spend, SpendLedger):
        return 0
    released = await deps.spend.release_stale(older_than=timedelta(minutes=15))
    if released:
        log.warning("Released %d budget holds left by replies that never finished.", released)
    return released


async def prune_events(deps: Deps) -> int:
    before = deps.clock.now() - timedelta(days=deps.settings.candor.event_retention_days)
    async with deps.db.write() as session:
        return await repo.delete_events_before(session, before=before)


async def prune_history(deps: Deps) -> int:
    days = deps.settings.candor.history_retention_days
    if days <= 0:
        return 0
    before = deps.clock.now() - timedelta(days=days)
    async with deps.db.write() as session:
        result = await session.execute(
            delete(ConversationTurnRow).where(ConversationTurnRow.created_at < before)
        )
    return int(getattr(result, "rowcount", 0) or 0)


def build_scheduler(deps: Deps) -> AsyncIOScheduler:
    """The scheduler with Candor's jobs; the caller starts and shuts it down."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    defaults = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
    scheduler.add_job(
        release_stale_holds,
        "interval",
        minutes=5,
        args=[deps],
        id="release_stale_holds",
        **defaults,
    )
    scheduler.add_job(
        prune_events, "interval", hours=24, args=[deps], id="prune_events", **defaults
    )
    scheduler.add_job(
        prune_history, "interval", hours=24, args=[deps], id="prune_history", **defaults
    )
    return scheduler
