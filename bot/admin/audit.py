"""The audit log of admin changes: append one row per change, read the latest.

Callers write the audit row in the same transaction as the change itself, so a change
without its audit row (or the reverse) can never be committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.admin_models import AuditRow

#: `/candor audit N` shows at most this many entries.
AUDIT_MAX = 50
AUDIT_DEFAULT = 10


@dataclass(frozen=True)
class AuditEntry:
    """One audit row, as the admin surface shows it."""

    id: int
    workspace_id: str
    actor_id: str
    action: str
    target: str
    before: Any
    after: Any
    created_at: datetime


async def record(
    session: AsyncSession,
    *,
    workspace_id: str,
    actor_id: str,
    action: str,
    target: str,
    before: Any,
    after: Any,
    when: datetime,
) -> AuditRow:
    """Add one audit row (flushed, not committed: the caller owns the transaction)."""
    row = AuditRow(
        workspace_id=workspace_id,
        actor_id=actor_id,
        action=action[:64],
        target=target[:64],
        before=_jsonable(before),
        after=_jsonable(after),
        created_at=when,
    )
    session.add(row)
    await session.flush()
    return row


async def latest(session: AsyncSession, *, limit: int = AUDIT_DEFAULT) -> list[AuditEntry]:
    """The newest `limit` audit entries, newest first."""
    result = await session.execute(
        select(AuditRow).order_by(AuditRow.created_at.desc(), AuditRow.id.desc()).limit(limit)
    )
    return [
        AuditEntry(
            id=row.id,
            workspace_id=row.workspace_id,
            actor_id=row.actor_id,
            action=row.action,
            target=row.target,
            before=row.before,
            after=row.after,
            created_at=row.created_at,
        )
        for row in result.scalars().all()
    ]


def _jsonable(value: Any) -> Any:
    """Tuples become lists so the JSON column round-trips to what was written."""
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
