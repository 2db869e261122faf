"""Tables of the review loop: review items for answers, and each channel's experts.

- `answer_reviews` holds one row per answer that a person should look at: flagged by the
  confidence core, voted 👎, or passed on by the asker with **Ask a human**. One row per
  answer (a 👎 on an answer already under review adds nothing); `status` is `open`,
  `resolved` or `corrected`, with who did it and the correction text. Where the item was
  posted for reviewers (`review_channel`, `review_ts`) lets the buttons update it.
- `channel_experts` lists the people **Ask a human** mentions in a channel's thread.

Both live beside the core models (same `Base`) and are created by migration `0008_review`,
which also adds `channel_settings.review_channel`; `0011_sync` adds `asked_at` and
`reminded_at` (the Ask-a-human reminder).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.models import Base, utcnow

REVIEW_OPEN = "open"
REVIEW_RESOLVED = "resolved"
REVIEW_CORRECTED = "corrected"


class AnswerReviewRow(Base):
    """An answer put in front of reviewers, and what they did with it."""

    __tablename__ = "answer_reviews"
    __table_args__ = (Index("ix_answer_reviews_status", "status", "created_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    answer_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), unique=True
    )
    workspace_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str] = mapped_column(String(32))
    #: Why it came: `flagged`, `thumbs_down` or `ask_human` (the first reason wins).
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=REVIEW_OPEN)
    reasons: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    #: Who raised it: the 👎 voter or the asker who pressed Ask a human.
    raised_by: Mapped[str | None] = mapped_column(String(32), default=None)
    review_channel: Mapped[str | None] = mapped_column(String(32), default=None)
    review_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    reviewer_id: Mapped[str | None] = mapped_column(String(32), default=None)
    correction: Mapped[str | None] = mapped_column(Text, default=None)
    #: The knowledge source the correction became, when the reviewer chose so.
    knowledge_source: Mapped[str | None] = mapped_column(String(300), default=None)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: When **Ask a human** was first pressed (the item may have opened earlier, flagged).
    asked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: When the one reminder of an unanswered Ask a human was posted (migration 0011_sync).
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class ChannelExpertRow(Base):
    """A person **Ask a human** mentions in a channel."""

    __tablename__ = "channel_experts"

    workspace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    added_by: Mapped[str | None] = mapped_column(String(32), default=None)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
