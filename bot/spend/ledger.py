"""Ledger repository: the SQL behind reservations, budget counters and ledger rows.

Keyword-only functions that take a session; the caller owns the transaction, so a
reserve (claim + hold) or a settle (transition + counter + ledger row) commits or rolls
back as one. `bot.spend.guard.SpendLedger` decides *what* to do; this module only knows *how*.

Every check-and-change is a single conditional statement (`UPDATE ... WHERE <guard>
RETURNING`), never a read followed by a write: on Postgres the UPDATE row-locks and
re-checks the guard against the latest committed row, and on SQLite writers serialize,
so concurrent callers cannot both pass on stale numbers. The first statement of each
write transaction is a write, so SQLite takes its write lock before reading anything.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.spend_models import BudgetUsageRow, SpendLedgerRow, SpendReservationRow
from bot.errors import CandorError

CHAT = "chat"
EMBEDDING = "embedding"
HELD, SETTLED, RELEASED = "held", "settled", "released"


class DuplicateCall(CandorError):
    """This event was already billed (or is being answered right now); nothing is charged."""

    def __init__(self, call_id: str, status: str) -> None:
        message = (
            "Candor is already answering this message."
            if status == HELD
            else "Candor has already answered this message."
        )
        super().__init__(f"call {call_id} is already {status}", user_message=message)
        self.call_id = call_id
        self.status = status


@dataclass(frozen=True)
class ReservedCall:
    """What a reservation row says about its call, as a state transition returns it."""

    call_id: str
    kind: str
    workspace_id: str
    channel_id: str
    user_id: str
    model: str
    period_key: str
    amount_micro_usd: int


def generated_call_id() -> str:
    """The call id of a call that serves no Slack event (CLI, jobs)."""
    return f"gen:{uuid.uuid4().hex}"


def _insert(session: AsyncSession, model: Any) -> Any:
    """A dialect INSERT with ON CONFLICT (both Postgres and SQLite have it)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


_NO_SYNC = {"synchronize_session": False}


async def claim_reservation(
    session: AsyncSession, *, call_id: str, kind: str, values: dict[str, Any], now: datetime
) -> int:
    """Create the reservation of `call_id`, or re-arm it if a failed attempt released it.

    Raises `DuplicateCall` if it is held (being answered) or settled (already billed).
    """
    table = SpendReservationRow
    fields = {**values, "status": HELD, "reason": None, "created_at": now, "updated_at": now}
    created = (
        await session.execute(
            _insert(session, table)
            .values(call_id=call_id, kind=kind, **fields)
            .on_conflict_do_nothing(index_elements=["call_id", "kind"])
            .returning(table.id)
        )
    ).first()
    if created is not None:
        return int(created[0])
    rearmed = (
        await session.execute(
            update(table)
            .where(table.call_id == call_id, table.kind == kind, table.status == RELEASED)
            .values(fields)
            .returning(table.id)
            .execution_options(**_NO_SYNC)
        )
    ).first()
    if rearmed is not None:
        return int(rearmed[0])
    status = (
        await session.execute(
            select(table.status).where(table.call_id == call_id, table.kind == kind)
        )
    ).scalar_one()
    raise DuplicateCall(call_id, status)


async def transition(
    session: AsyncSession,
    *,
    reservation_id: int,
    old: str,
    new: str,
    now: datetime,
    reason: str | None = None,
) -> ReservedCall | None:
    """Move a reservation from `old` to `new`; its call, or None if it was not `old`."""
    table = SpendReservationRow
    values: dict[str, Any] = {"status": new, "updated_at": now}
    if reason is not None:
        values["reason"] = reason[:64]
    row = (
        await session.execute(
            update(table)
            .where(table.id == reservation_id, table.status == old)
            .values(values)
            .returning(
                table.call_id,
                table.kind,
                table.workspace_id,
                table.channel_id,
                table.user_id,
                table.model,
                table.period_key,
                table.amount_micro_usd,
            )
            .execution_options(**_NO_SYNC)
        )
    ).first()
    return None if row is None else ReservedCall(**row._asdict())


async def ensure_counter(
    session: AsyncSession, *, user_id: str, period_key: str, now: datetime
) -> None:
    """Create the user's counter row for the period if it does not exist yet."""
    await session.execute(
        _insert(session, BudgetUsageRow)
        .values(
            user_id=user_id,
            period_key=period_key,
            spent_micro_usd=0,
            held_micro_usd=0,
            user_warned=False,
            admins_alerted=False,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["user_id", "period_key"])
    )


async def hold(
    session: AsyncSession,
    *,
    user_id: str,
    period_key: str,
    amount: int,
    limit: int | None,
    now: datetime,
) -> int | None:
    """Add `amount` to `held` if spent + held + amount fits `limit` (None: no limit).

    Returns the settled spend, or None when the budget cannot cover it.
    """
    counter = BudgetUsageRow
    conditions = [counter.user_id == user_id, counter.period_key == period_key]
    if limit is not None:
        conditions.append(counter.spent_micro_usd + counter.held_micro_usd + amount <= limit)
    row = (
        await session.execute(
            update(counter)
            .where(*conditions)
            .values(held_micro_usd=counter.held_micro_usd + amount, updated_at=now)
            .returning(counter.spent_micro_usd)
            .execution_options(**_NO_SYNC)
        )
    ).first()
    return None if row is None else int(row[0])


async def add_to_counter(
    session: AsyncSession,
    *,
    user_id: str,
    period_key: str,
    spent: int = 0,
    held: int = 0,
    now: datetime,
) -> int:
    """Add the deltas to the user's counter (which must exist); the new settled spend."""
    counter = BudgetUsageRow
    return int(
        (
            await session.execute(
                update(counter)
                .where(counter.user_id == user_id, counter.period_key == period_key)
                .values(
                    spent_micro_usd=counter.spent_micro_usd + spent,
                    held_micro_usd=counter.held_micro_usd + held,
                    updated_at=now,
                )
                .returning(counter.spent_micro_usd)
                .execution_options(**_NO_SYNC)
            )
        ).scalar_one()
    )


@dataclass(frozen=True)
class Held:
    """The outcome of `hold_for_call`: the reservation, and the user's settled spend.

    `held` is False when the budget could not cover the amount; the caller then raises
    (rolling back the claim with the transaction) and `spent` is the counter as it stands.
    """

    reservation_id: int
    spent: int
    held: bool


async def hold_for_call(
    session: AsyncSession,
    *,
    call_id: str,
    kind: str,
    values: dict[str, Any],
    limit: int | None,
    now: datetime,
) -> Held:
    """Claim the reservation of `call_id` and hold its amount on the user's counter.

    `values` are the reservation's fields (`user_id`, `period_key` and `amount_micro_usd`
    among them). One sequence for every kind of call (chat, image), so a hold is always
    claimed, counted and limit-checked the same way.
    """
    reservation_id = await claim_reservation(
        session, call_id=call_id, kind=kind, values=values, now=now
    )
    user_id, period_key = str(values["user_id"]), str(values["period_key"])
    await ensure_counter(session, user_id=user_id, period_key=period_key, now=now)
    spent = await hold(
        session,
        user_id=user_id,
        period_key=period_key,
        amount=int(values["amount_micro_usd"]),
        limit=limit,
        now=now,
    )
    if spent is None:
        current = await counter_spent(session, user_id=user_id, period_key=period_key)
        return Held(reservation_id, current, held=False)
    return Held(reservation_id, spent, held=True)


async def release_hold(
    session: AsyncSession, *, reservation_id: int, reason: str, now: datetime
) -> ReservedCall | None:
    """Release a held reservation and give its amount back; None if it was not held."""
    row = await transition(
        session, reservation_id=reservation_id, old=HELD, new=RELEASED, now=now, reason=reason
    )
    if row is not None:
        await add_to_counter(
            session,
            user_id=row.user_id,
            period_key=row.period_key,
            held=-row.amount_micro_usd,
            now=now,
        )
    return row


async def counter_spent(session: AsyncSession, *, user_id: str, period_key: str) -> int:
    spent = (
        await session.execute(
            select(BudgetUsageRow.spent_micro_usd).where(
                BudgetUsageRow.user_id == user_id, BudgetUsageRow.period_key == period_key
            )
        )
    ).scalar_one_or_none()
    return int(spent or 0)


async def claim_flag(session: AsyncSession, *, user_id: str, period_key: str, flag: str) -> bool:
    """Set a once-per-period flag (`user_warned`, `admins_alerted`); True only for its setter."""
    column = getattr(BudgetUsageRow, flag)
    claimed = (
        await session.execute(
            update(BudgetUsageRow)
            .where(
                BudgetUsageRow.user_id == user_id,
                BudgetUsageRow.period_key == period_key,
                column.is_(False),
            )
            .values({flag: True})
            .returning(BudgetUsageRow.user_id)
            .execution_options(**_NO_SYNC)
        )
    ).first()
    return claimed is not None


async def insert_charge(session: AsyncSession, **values: Any) -> bool:
    """Write a settled ledger row unless `(call_id, kind)` is already charged; True if new."""
    ledger = SpendLedgerRow
    inserted = (
        await session.execute(
            _insert(session, ledger)
            .values(status=SETTLED, **values)
            .on_conflict_do_nothing(
                # A literal predicate: Postgres infers a partial index only from the
                # same expression, and a bound parameter is not the same expression.
                index_elements=["call_id", "kind"],
                index_where=text("status = 'settled'"),
            )
            .returning(ledger.id)
        )
    ).first()
    return inserted is not None


async def held_reservations(
    session: AsyncSession, *, older_than: datetime
) -> list[tuple[int, str]]:
    """(id, user) of reservations held since before `older_than`."""
    rows = await session.execute(
        select(SpendReservationRow.id, SpendReservationRow.user_id).where(
            SpendReservationRow.status == HELD, SpendReservationRow.created_at < older_than
        )
    )
    return [(int(i), str(u)) for i, u in rows.all()]
