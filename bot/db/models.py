"""SQLAlchemy 2.0 models for Candor's state.

The database is the only state Candor keeps, so every replica agrees: channel settings,
the conversation history of each thread, the events already processed (for exactly one
answer per user message) and the answers given with the retrieval hits behind them.
Migrations in `bot/db/migrations/` create these tables; the models mirror them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: The key of the workspace-default settings row (workspace and channel both "*").
DEFAULT_KEY = "*"


def utcnow() -> datetime:
    """Fail loudly: every timestamp Candor writes comes from the injected `Clock`.

    Used as the Python-side default of every timestamp column, so a write that forgets to
    pass `now` is a bug found by the first test that makes it, instead of a row dated by
    the wall clock while the rest of the system (and the tests) follow the injected one.
    """
    raise MissingTimestampError(
        "a timestamp column was left to its default; pass the injected clock's now()"
    )


class MissingTimestampError(RuntimeError):
    """A row was written without a timestamp from the injected clock."""


class Base(DeclarativeBase):
    """Declarative base for every Candor table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[str]: JSON,
        datetime: DateTime(timezone=True),
    }


class ChannelSettingsRow(Base):
    """Per-channel overrides; NULL means "inherit from the workspace default".

    The row keyed (`*`, `*`) is the workspace default; a NULL there means the value from
    `Settings` (environment) applies.
    """

    __tablename__ = "channel_settings"
    __table_args__ = (UniqueConstraint("workspace_id", "channel_id", name="uq_channel_settings"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    system_message: Mapped[str | None] = mapped_column(Text, default=None)
    temperature: Mapped[float | None] = mapped_column(Float, default=None)
    model: Mapped[str | None] = mapped_column(String(128), default=None)
    max_answer_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    enabled: Mapped[bool | None] = mapped_column(Boolean, default=None)
    kb_scopes: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    kb_top_k: Mapped[int | None] = mapped_column(Integer, default=None)
    kb_score_floor: Mapped[float | None] = mapped_column(Float, default=None)
    # Most steps of the tool-calling loop (migration 0009_tools).
    tool_max_steps: Mapped[int | None] = mapped_column(Integer, default=None)
    # Confidence (migration 0007_confidence): strict mode, the judge model ("off" turns
    # off a judge the default set), the flag threshold.
    strict: Mapped[bool | None] = mapped_column(Boolean, default=None)
    judge_model: Mapped[str | None] = mapped_column(String(128), default=None)
    flag_threshold: Mapped[float | None] = mapped_column(Float, default=None)
    # Where this channel's flagged and 👎 answers go for review (migration 0008_review).
    review_channel: Mapped[str | None] = mapped_column(String(32), default=None)
    # Redaction before the LLM (migration 0010_redaction): secrets, personal data, and
    # the admin's patterns as {name: regex}.
    redact_secrets: Mapped[bool | None] = mapped_column(Boolean, default=None)
    redact_pii: Mapped[bool | None] = mapped_column(Boolean, default=None)
    redact_patterns: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The model `generate_image` uses here; NULL or "off": no image tool (0012_daily).
    image_model: Mapped[str | None] = mapped_column(String(128), default=None)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(32), default=None)


class ConversationTurnRow(Base):
    """One message of a thread, as the model saw it (user or assistant)."""

    __tablename__ = "conversation_turns"
    __table_args__ = (Index("ix_turns_thread", "thread_key", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    workspace_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_key: Mapped[str] = mapped_column(String(160))
    role: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str | None] = mapped_column(String(32), default=None)
    text: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[str | None] = mapped_column(String(128), default=None)
    event_id: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProcessedEventRow(Base):
    """An event Candor has claimed; the primary key makes the claim atomic.

    `status` is `claimed` while the answer runs, then how it ended (`answered`, `failed`,
    ...). Where the message was (workspace, channel, thread, user) is kept so a claim that
    never finishes can be reported in its thread by the sweep (`bot.jobs.scheduler`).
    """

    __tablename__ = "processed_events"
    __table_args__ = (Index("ix_processed_events_status", "status", "received_at"),)

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default="claimed")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    workspace_id: Mapped[str | None] = mapped_column(String(32), default=None)
    channel_id: Mapped[str | None] = mapped_column(String(32), default=None)
    thread_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    user_id: Mapped[str | None] = mapped_column(String(32), default=None)
    # When `status` last changed; None for claims written before it was recorded.
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class AnswerFeedbackRow(Base):
    """A user's 👍 / 👎 on an answer; a new click replaces their earlier vote."""

    __tablename__ = "answer_feedback"

    answer_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vote: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnswerRow(Base):
    """An answer Candor gave, with the retrieval hits and signals behind it."""

    __tablename__ = "answers"
    __table_args__ = (Index("ix_answers_event", "event_id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str | None] = mapped_column(String(128), default=None)
    workspace_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_key: Mapped[str] = mapped_column(String(160))
    user_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    usage_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    hits: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    # Why the confidence is what it is (main reason first), and the raw signals behind it.
    reasons: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    signals: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ToolPermissionRow(Base):
    """An admin's rule for a tool (or every tool of a server) in a channel or workspace.

    `channel_id` `*` is every channel of the workspace; `workspace_id` `*` every
    workspace (the CLI's default); `tool` `*` every tool of `server` (`builtin` for the
    built-ins). `allowed` NULL means no access rule at this level; `read_only` is only
    read from workspace-wide rows (an admin's word, never the server's).
    """

    __tablename__ = "tool_permissions"
    __table_args__ = (
        UniqueConstraint(
            "workspace_id", "channel_id", "server", "tool", name="uq_tool_permissions"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    server: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(128))
    allowed: Mapped[bool | None] = mapped_column(Boolean, default=None)
    read_only: Mapped[bool | None] = mapped_column(Boolean, default=None)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(32), default=None)


class ToolApprovalRow(Base):
    """A tool call with side effects waiting for (or decided by) a person.

    In the database, not in memory, so the replica that receives the Approve / Deny click
    need not be the one running the answer.
    """

    __tablename__ = "tool_approvals"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    workspace_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    tool: Mapped[str] = mapped_column(String(200))
    arguments: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: pending, approved, denied or expired.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
