"""Helpers for the spend tests: turns, and reading what the ledger recorded."""

from __future__ import annotations

from sqlalchemy import select

from bot.conversation import Turn
from bot.db.engine import Database
from bot.db.spend_models import SpendLedgerRow


def make_turn(text: str = "How do I deploy?", **kw: object) -> Turn:
    base: dict[str, object] = {
        "workspace_id": "T1",
        "channel_id": "C1",
        "thread_ts": "1700000000.000100",
        "user_id": "U1",
        "text": text,
        "event_id": None,
        "user_name": "ada",
        "channel_name": "#eng",
    }
    base.update(kw)
    return Turn(**base)  # type: ignore[arg-type]


async def ledger_rows(db: Database, **where: object) -> list[SpendLedgerRow]:
    """Every ledger row (filtered by column equality), oldest first."""
    query = select(SpendLedgerRow).order_by(SpendLedgerRow.id)
    for column, value in where.items():
        query = query.where(getattr(SpendLedgerRow, column) == value)
    async with db.sessions() as session:
        return list((await session.execute(query)).scalars())
