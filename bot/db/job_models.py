"""Tables behind scheduled work: the scheduler lease and each job's state.

- `scheduler_leases` holds one row per lease (Candor uses one, `scheduler`): which replica
  holds it and until when. A replica takes or renews it with one guarded UPDATE (or the
  first INSERT), so at most one replica holds an unexpired lease; a replica that dies
  holding it is replaced once `expires_at` passes. A lease row rather than a Postgres
  advisory lock: it works the same on SQLite and Postgres, needs no session kept open, and
  `candor jobs list` can show the holder.
- `job_state` holds one row per job: when it is next due (the slot a run claims, so a slot
  runs once even if two holders overlapped), and the last run's start, end, outcome and
  error.

Created by migration `0006_jobs`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.models import Base, utcnow


class SchedulerLeaseRow(Base):
    """Who runs scheduled jobs until `expires_at`."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobStateRow(Base):
    """One scheduled job: its next due slot and how its last run went."""

    __tablename__ = "job_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_status: Mapped[str | None] = mapped_column(String(16), default=None)  # ok | failed
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_result: Mapped[str | None] = mapped_column(String(200), default=None)
    last_holder: Mapped[str | None] = mapped_column(String(128), default=None)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
