"""Helpers for the spend tests: turns, and reading what the ledger recorded."""

from __future__ import annotations

from sqlalchemy import select

from bot.db.engine import Database
from bot.db.spend_models import SpendLedgerRow
from bot.ports import Reservation, SpendGuard
from tests.helpers import make_turn

__all__ = ["hold", "ledger_rows", "make_turn"]


async def ledger_rows(db: Database, **where: object) -> list[SpendLedgerRow]:
    """Every ledger row (filtered by column equality), oldest first."""
    query = select(SpendLedgerRow).order_by(SpendLedgerRow.id)
    for column, value in where.items():
        query = query.where(getattr(SpendLedgerRow, column) == value)
    async with db.sessions() as session:
        return list((await session.execute(query)).scalars())


async def hold(
    guard: SpendGuard,
    event_id: str | None,
    *,
    user: str = "U1",
    model: str = "gpt-4o-mini",
    prompt_tokens: int = 100,
    max_output_tokens: int = 100,
) -> Reservation:
    """Reserve one chat call in channel C1 of workspace T1 (what the manager does first)."""
    return await guard.reserve(
        workspace_id="T1",
        channel_id="C1",
        user_id=user,
        model=model,
        prompt_tokens=prompt_tokens,
        max_output_tokens=max_output_tokens,
        event_id=event_id,
    )
