"""What the review jobs read: the week's review items for the digest, and the Ask-a-human
requests nobody answered.

- `week_summary`: items raised since a cut-off, counted by why they came (flagged, 👎,
  Ask a human) and by status (open, resolved, corrected); 👎 votes cast since then; the
  items still open overall and the oldest of them (the ones waiting longest).
- `due_reminders` / `mark_reminded`: Ask-a-human requests still open after the wait, and
  the guarded UPDATE that lets exactly one caller remind each (`reminded_at IS NULL`).

Every function takes the caller's session and the injected clock's times; none commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import AnswerFeedbackRow
from bot.db.review_models import (
    REVIEW_CORRECTED,
    REVIEW_OPEN,
    REVIEW_RESOLVED,
    AnswerReviewRow,
)
from bot.review.items import ReviewItem, load


@dataclass
class WeekSummary:
    """The digest's numbers; `oldest_open` are the items waiting longest."""

    raised: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    thumbs_down_votes: int = 0
    open_total: int = 0
    #: The open items waiting longest, each with when it was raised.
    oldest_open: list[tuple[ReviewItem, datetime]] = field(default_factory=list)


async def week_summary(session: AsyncSession, *, since: datetime, top: int = 5) -> WeekSummary:
    """Review items raised at or after `since`, the 👎 votes cast since, and open items."""
    summary = WeekSummary()
    rows = (
        await session.execute(
            select(AnswerReviewRow.kind, AnswerReviewRow.status, func.count())
            .where(AnswerReviewRow.created_at >= since)
            .group_by(AnswerReviewRow.kind, AnswerReviewRow.status)
        )
    ).all()
    summary.by_status = {REVIEW_OPEN: 0, REVIEW_RESOLVED: 0, REVIEW_CORRECTED: 0}
    for kind, status, count in rows:
        summary.raised += int(count)
        summary.by_kind[str(kind)] = summary.by_kind.get(str(kind), 0) + int(count)
        summary.by_status[str(status)] = summary.by_status.get(str(status), 0) + int(count)
    summary.thumbs_down_votes = int(
        (
            await session.execute(
                select(func.count())
                .select_from(AnswerFeedbackRow)
                .where(AnswerFeedbackRow.vote == "down", AnswerFeedbackRow.created_at >= since)
            )
        ).scalar_one()
    )
    summary.open_total = int(
        (
            await session.execute(
                select(func.count())
                .select_from(AnswerReviewRow)
                .where(AnswerReviewRow.status == REVIEW_OPEN)
            )
        ).scalar_one()
    )
    oldest = (
        await session.execute(
            select(AnswerReviewRow.id, AnswerReviewRow.created_at)
            .where(AnswerReviewRow.status == REVIEW_OPEN)
            .order_by(AnswerReviewRow.created_at, AnswerReviewRow.id)
            .limit(top)
        )
    ).all()
    for review_id, created_at in oldest:
        try:
            item = await load(session, review_id=int(review_id))
        except LookupError:
            continue  # its answer was deleted; the count still has it
        summary.oldest_open.append((item, created_at))
    return summary


@dataclass(frozen=True)
class DueReminder:
    """An Ask-a-human request still open after the wait: where to remind, and since when."""

    review_id: int
    workspace_id: str
    channel_id: str
    thread_ts: str
    asked_at: datetime
    asked_by: str | None


async def due_reminders(
    session: AsyncSession, *, asked_before: datetime, limit: int = 100
) -> list[DueReminder]:
    """Open items whose Ask a human came before `asked_before` and were never reminded."""
    rows = (
        await session.execute(
            select(AnswerReviewRow)
            .where(
                AnswerReviewRow.status == REVIEW_OPEN,
                AnswerReviewRow.asked_at.is_not(None),
                AnswerReviewRow.asked_at <= asked_before,
                AnswerReviewRow.reminded_at.is_(None),
            )
            .order_by(AnswerReviewRow.asked_at, AnswerReviewRow.id)
            .limit(limit)
        )
    ).scalars()
    return [
        DueReminder(
            review_id=row.id,
            workspace_id=row.workspace_id,
            channel_id=row.channel_id,
            thread_ts=row.thread_ts,
            asked_at=row.asked_at,
            asked_by=row.raised_by,
        )
        for row in rows
        if row.asked_at is not None
    ]


async def mark_reminded(session: AsyncSession, *, review_id: int, now: datetime) -> bool:
    """Claim the reminder of `review_id`; True for exactly one caller, and only while the
    item is still open (resolved or corrected meanwhile: no reminder)."""
    result = await session.execute(
        update(AnswerReviewRow)
        .where(
            AnswerReviewRow.id == review_id,
            AnswerReviewRow.reminded_at.is_(None),
            AnswerReviewRow.status == REVIEW_OPEN,
        )
        .values(reminded_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1
