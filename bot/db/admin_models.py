"""Tables for the admin surface: the admin allowlist and the audit log.

Both live beside the core models (same `Base`, same metadata) and are created by
migration `0003_admin`. The audit log is append-only: every change an admin makes
through `/candor` or the App Home writes one row with the value before and after.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.models import Base, utcnow


class AdminUserRow(Base):
    """A user ID allowed to administer Candor, beside Slack's admins and owners."""

    __tablename__ = "admin_users"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    added_by: Mapped[str | None] = mapped_column(String(32), default=None)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditRow(Base):
    """One change an admin made: who, what, on which target, before and after."""

    __tablename__ = "admin_audit"
    __table_args__ = (Index("ix_admin_audit_created", "created_at", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    workspace_id: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    before: Mapped[Any] = mapped_column(JSON, default=None, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, default=None, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
