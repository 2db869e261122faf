"""Review items: one per answer people should look at, and what reviewers did with it.

An answer comes up for review when the confidence core flags it, when someone votes 👎, or
when the asker presses **Ask a human**. Whichever comes first opens the item; later ones
find it (`raise_review` returns it with `created=False`), so reviewers see one message
per answer. A reviewer then marks it resolved, or writes a correction, which is stored
here and may become a Q&A document in the answer's channel scope (`correction_document`).

Every function takes the caller's session and the injected clock's `now`; none commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import AnswerRow, ConversationTurnRow
from bot.db.review_models import (
    REVIEW_CORRECTED,
    REVIEW_OPEN,
    REVIEW_RESOLVED,
    AnswerReviewRow,
)
from knowledge import Document, Scope

KIND_FLAGGED = "flagged"
KIND_THUMBS_DOWN = "thumbs_down"
KIND_ASK_HUMAN = "ask_human"
#: Longest correction a reviewer may write (a Slack modal input holds 3,000 characters).
CORRECTION_MAX_CHARS = 3000


class ReviewNotFound(LookupError):
    """No review item (or no answer) with that id."""


@dataclass(frozen=True)
class ReviewItem:
    """A review item with the answer and question behind it, as reviewers see it."""

    review_id: int
    answer_id: int
    workspace_id: str
    channel_id: str
    thread_ts: str
    kind: str
    status: str
    question: str
    answer: str
    model: str
    reasons: tuple[str, ...]
    confidence: float | None
    hits: tuple[dict[str, Any], ...]
    raised_by: str | None
    review_channel: str | None
    review_ts: str | None
    reviewer_id: str | None
    correction: str | None
    knowledge_source: str | None
    created: bool = False

    @property
    def is_open(self) -> bool:
        return self.status == REVIEW_OPEN


def thread_ts_of(thread_key: str) -> str:
    """The thread's ts from a `workspace:channel:ts` thread key."""
    return thread_key.rsplit(":", 1)[-1]


async def question_of(session: AsyncSession, answer: AnswerRow) -> str:
    """The user message the answer replied to (same event, same thread), or ""."""
    if answer.event_id is None:
        return ""
    result = await session.execute(
        select(ConversationTurnRow.text)
        .where(
            ConversationTurnRow.thread_key == answer.thread_key,
            ConversationTurnRow.event_id == answer.event_id,
            ConversationTurnRow.role == "user",
        )
        .order_by(ConversationTurnRow.id)
        .limit(1)
    )
    return result.scalar_one_or_none() or ""


async def _item(
    session: AsyncSession, row: AnswerReviewRow, *, created: bool = False
) -> ReviewItem:
    answer = await session.get(AnswerRow, row.answer_id)
    if answer is None:
        raise ReviewNotFound(f"answer {row.answer_id}")
    return ReviewItem(
        review_id=row.id,
        answer_id=row.answer_id,
        workspace_id=row.workspace_id,
        channel_id=row.channel_id,
        thread_ts=row.thread_ts,
        kind=row.kind,
        status=row.status,
        question=await question_of(session, answer),
        answer=answer.text,
        model=answer.model,
        reasons=tuple(row.reasons or ()),
        confidence=row.confidence if row.confidence is not None else answer.confidence,
        hits=tuple(answer.hits or ()),
        raised_by=row.raised_by,
        review_channel=row.review_channel,
        review_ts=row.review_ts,
        reviewer_id=row.reviewer_id,
        correction=row.correction,
        knowledge_source=row.knowledge_source,
        created=created,
    )


async def raise_review(
    session: AsyncSession,
    *,
    answer_id: int,
    kind: str,
    now: datetime,
    reasons: Sequence[str] = (),
    confidence: float | None = None,
    raised_by: str | None = None,
) -> ReviewItem | None:
    """Open the review item of `answer_id`, or return the one already open.

    None when the answer is unknown. A later raise of the same answer (a 👎 on a flagged
    answer) keeps the first item and adds the new reasons it did not have yet.
    """
    row = await _row_for_answer(session, answer_id)
    if row is not None:
        new = [r for r in reasons if r not in (row.reasons or [])]
        if new:
            row.reasons = [*(row.reasons or []), *new]
            row.updated_at = now
        if kind == KIND_ASK_HUMAN and row.asked_at is None:
            row.asked_at = now  # the reminder counts from here, not from the flag
            row.updated_at = now
        await session.flush()
        return await _item(session, row)
    answer = await session.get(AnswerRow, answer_id)
    if answer is None:
        return None
    row = AnswerReviewRow(
        answer_id=answer_id,
        workspace_id=answer.workspace_id,
        channel_id=answer.channel_id,
        thread_ts=thread_ts_of(answer.thread_key),
        kind=kind,
        status=REVIEW_OPEN,
        reasons=list(reasons) or None,
        confidence=confidence,
        raised_by=raised_by,
        created_at=now,
        updated_at=now,
        asked_at=now if kind == KIND_ASK_HUMAN else None,
    )
    session.add(row)
    await session.flush()
    return await _item(session, row, created=True)


async def _row_for_answer(session: AsyncSession, answer_id: int) -> AnswerReviewRow | None:
    result = await session.execute(
        select(AnswerReviewRow).where(AnswerReviewRow.answer_id == answer_id)
    )
    return result.scalar_one_or_none()


async def _row(session: AsyncSession, review_id: int) -> AnswerReviewRow:
    row = await session.get(AnswerReviewRow, review_id)
    if row is None:
        raise ReviewNotFound(f"review {review_id}")
    return row


async def load(session: AsyncSession, *, review_id: int) -> ReviewItem:
    """The review item `review_id`; `ReviewNotFound` when there is none."""
    return await _item(session, await _row(session, review_id))


async def for_answer(session: AsyncSession, *, answer_id: int) -> ReviewItem | None:
    """The review item of `answer_id`, if one was opened."""
    row = await _row_for_answer(session, answer_id)
    return None if row is None else await _item(session, row)


async def set_posted(
    session: AsyncSession, *, review_id: int, channel: str, ts: str, now: datetime
) -> None:
    """Remember where the item was posted for reviewers (its buttons update that message)."""
    row = await _row(session, review_id)
    row.review_channel = channel
    row.review_ts = ts
    row.updated_at = now
    await session.flush()


async def resolve(
    session: AsyncSession, *, review_id: int, reviewer_id: str, now: datetime
) -> ReviewItem:
    """Mark the item resolved by `reviewer_id` (a corrected item stays corrected)."""
    row = await _row(session, review_id)
    if row.status != REVIEW_CORRECTED:
        row.status = REVIEW_RESOLVED
        row.reviewer_id = reviewer_id
        row.updated_at = now
        await session.flush()
    return await _item(session, row)


def check_correction(text: str) -> str:
    """The correction as stored; `ValueError` with a sentence for the reviewer otherwise."""
    value = text.strip()
    if not value:
        raise ValueError("Write the correct answer before saving.")
    if len(value) > CORRECTION_MAX_CHARS:
        raise ValueError(
            f"The correction is {len(value):,} characters; the limit is {CORRECTION_MAX_CHARS:,}."
        )
    return value


async def correct(
    session: AsyncSession,
    *,
    review_id: int,
    reviewer_id: str,
    text: str,
    now: datetime,
    knowledge_source: str | None = None,
) -> ReviewItem:
    """Store `reviewer_id`'s correction; the item becomes `corrected`."""
    row = await _row(session, review_id)
    row.correction = check_correction(text)
    row.status = REVIEW_CORRECTED
    row.reviewer_id = reviewer_id
    if knowledge_source is not None:
        row.knowledge_source = knowledge_source
    row.updated_at = now
    await session.flush()
    return await _item(session, row)


def correction_source(item: ReviewItem) -> str:
    """The knowledge source id of a correction: one per answer, so a new one replaces it."""
    return f"review:{item.channel_id}/{item.answer_id}"


def correction_document(
    item: ReviewItem, correction: str, *, private: bool, link: str = ""
) -> Document:
    """The correction as a Q&A document in the answer's channel scope (private if it is).

    The question and the corrected answer go in one text, so the next asker's question
    finds it and the model can cite it as a source of its own.
    """
    question = " ".join(item.question.split()) or "(question not recorded)"
    title = question if len(question) <= 80 else question[:79].rstrip() + "…"
    return Document(
        source=correction_source(item),
        title=f"Reviewed answer: {title}",
        link=link or correction_source(item),
        scope=Scope.channel(item.channel_id, private=private),
        text=f"Question: {question}\n\nAnswer (checked by a reviewer): {correction.strip()}",
    )
