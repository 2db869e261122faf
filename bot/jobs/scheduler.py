"""The original periodic jobs: stale budget holds, event and history retention, stale claims.

`bot.jobs.registry` schedules them (with the digests) and `bot.jobs.runner` runs them on
one replica at a time. Their default schedules:

- `release_stale_holds` every 5 minutes: a reply that crashed between reserve and settle
  leaves money held; after 15 minutes the hold is returned (a late settle still bills).
- `prune_events` daily: processed-event claims older than `CANDOR_EVENT_RETENTION_DAYS`
  (Slack stops retrying after minutes; a week is generous).
- `prune_history` daily, when `CANDOR_HISTORY_RETENTION_DAYS` > 0: conversation turns
  older than that are deleted (answers and the spend ledger are kept).
- `sweep_stale_claims` every minute: a message claimed more than
  `CANDOR_STALE_CLAIM_MINUTES` ago and still `claimed` was never answered (the process
  died between claim and answer). It is marked `failed` and the user gets one sentence in
  its thread asking them to ask again. It is reported, not retried: the claim does not
  store the message text (nor should it, for a row kept a week), and a retried answer
  could arrive long after the user moved on.

Each job is still idempotent (the sweep's guarded UPDATE lets exactly one caller report a
claim), so `candor jobs run NAME` beside the scheduler is harmless; each job function is a
plain coroutine that tests call directly with an injected clock.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete

from bot.db import repo
from bot.db.models import ConversationTurnRow
from bot.deps import Deps

log = logging.getLogger(__name__)


async def release_stale_holds(deps: Deps) -> int:
    from bot.spend.guard import SpendLedger

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


#: The `deps.extras` key of the surface's `ThreadNotice` (the Slack handlers set it).
THREAD_NOTICE = "thread_notice"

#: What the user reads in the thread of a message whose answer never finished.
STALE_CLAIM_SENTENCE = "Sorry, I could not answer this message; please ask again."


class ThreadNotice(Protocol):
    """Post one plain sentence in a thread (a surface provides it; `bot/` knows no Slack)."""

    async def __call__(self, *, channel: str, thread_ts: str, text: str) -> None: ...


async def sweep_stale_claims(deps: Deps, *, limit: int = 100) -> int:
    """Report claims still `claimed` after `CANDOR_STALE_CLAIM_MINUTES`; returns how many.

    Each claim is first marked `failed` with `UPDATE ... WHERE status = 'claimed'`, and only
    the caller whose update changed the row posts the sentence: two replicas sweeping at
    once report a claim once, and an answer that finished in between is left alone. A
    process without a surface to post through (no `THREAD_NOTICE`) leaves claims for one
    that has.
    """
    notice: ThreadNotice | None = deps.extras.get(THREAD_NOTICE)
    if notice is None:
        return 0
    now = deps.clock.now()
    before = now - timedelta(minutes=deps.settings.candor.stale_claim_minutes)
    async with deps.db.sessions() as session:
        stale = [
            (row.event_id, row.channel_id, row.thread_ts)
            for row in await repo.stale_claims(session, before=before, limit=limit)
        ]
    reported = 0
    for event_id, channel, thread_ts in stale:
        async with deps.db.write() as session:
            won = await repo.fail_claim(session, event_id=event_id, now=now)
        if not won:
            continue  # answered late, or another replica reported it
        reported += 1
        if not channel or not thread_ts:
            log.warning("Claim %s was never answered and has no thread to report in.", event_id)
            continue
        log.warning("Claim %s was never answered; telling the user.", event_id)
        try:
            await notice(channel=channel, thread_ts=thread_ts, text=STALE_CLAIM_SENTENCE)
        except Exception:
            # Marked failed already: one missed notice beats the same notice every minute.
            log.exception("Could not report the unanswered claim %s", event_id)
    return reported
