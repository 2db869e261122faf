"""Approvals of tool calls with side effects, kept in the database.

The answer that wants to run the call writes a `pending` row and waits; the Approve / Deny
click (on whichever replica Slack sends it to) decides it with one conditional UPDATE, so
two clicks cannot both win and a late click after the timeout changes nothing. Only the
person who asked, or an admin, may decide. The waiting side polls the row (and is woken at
once when the click lands in the same process); when the timeout passes the row becomes
`expired` and the call counts as denied.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from bot.clock import Clock
from bot.db.engine import Database
from bot.db.models import ToolApprovalRow

PENDING, APPROVED, DENIED, EXPIRED = "pending", "approved", "denied", "expired"
#: Seconds between looks at the row while waiting (a click elsewhere is seen this late).
POLL_SECONDS = 0.5


class Approvals:
    """Create, decide and wait for approvals; see the module docstring."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._wake: dict[int, asyncio.Event] = {}

    async def create(
        self,
        *,
        workspace_id: str,
        channel_id: str,
        thread_ts: str,
        user_id: str,
        tool: str,
        arguments: Mapping[str, Any],
    ) -> int:
        async with self.db.write() as session:
            row = ToolApprovalRow(
                workspace_id=workspace_id,
                channel_id=channel_id,
                thread_ts=thread_ts,
                user_id=user_id,
                tool=tool[:200],
                arguments=dict(arguments),
                status=PENDING,
                created_at=self.clock.now(),
            )
            session.add(row)
            await session.flush()
            return int(row.id)

    async def get(self, approval_id: int) -> ToolApprovalRow | None:
        async with self.db.sessions() as session:
            return await session.get(ToolApprovalRow, approval_id)

    async def decide(self, approval_id: int, *, approve: bool, user_id: str) -> str | None:
        """Decide a pending approval; the new status, or None if it was no longer pending."""
        status = APPROVED if approve else DENIED
        won = await self._transition(approval_id, status, user_id=user_id)
        event = self._wake.get(approval_id)
        if event is not None:
            event.set()
        return status if won else None

    async def _transition(self, approval_id: int, status: str, *, user_id: str | None) -> bool:
        now: datetime = self.clock.now()
        async with self.db.write() as session:
            result = await session.execute(
                update(ToolApprovalRow)
                .where(ToolApprovalRow.id == approval_id, ToolApprovalRow.status == PENDING)
                .values(status=status, decided_by=user_id, decided_at=now)
                .returning(ToolApprovalRow.id)
                .execution_options(synchronize_session=False)
            )
            return result.first() is not None

    async def wait(self, approval_id: int, timeout_seconds: float) -> bool:
        """True once approved; False when denied or when `timeout_seconds` pass."""
        event = self._wake.setdefault(approval_id, asyncio.Event())
        deadline = time.monotonic() + timeout_seconds
        try:
            while True:
                status = await self._status(approval_id)
                if status != PENDING:
                    return status == APPROVED
                left = deadline - time.monotonic()
                if left <= 0:
                    if await self._transition(approval_id, EXPIRED, user_id=None):
                        return False
                    continue  # decided at the last moment: read what was decided
                try:
                    async with asyncio.timeout(min(POLL_SECONDS, left)):
                        await event.wait()
                except TimeoutError:
                    pass
        finally:
            self._wake.pop(approval_id, None)

    async def _status(self, approval_id: int) -> str:
        async with self.db.sessions() as session:
            status = await session.scalar(
                select(ToolApprovalRow.status).where(ToolApprovalRow.id == approval_id)
            )
        return str(status or EXPIRED)
