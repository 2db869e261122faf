"""Ledger repository: the SQL behind reservations, budget counters and ledger rows.

Keyword-only functions that take a session; the caller owns the transaction, so a
reserve (claim + hold) or a settle (transition + counter + ledger row) commits or rolls
back as one. (On Postgres the claim and the hold are one statement, a function that is
atomic by itself: `hold_for_call`.) `bot.spend.guard.SpendLedger` decides *what* to do;
this module only knows *how*.

Every check-and-change is a single conditional statement (`UPDATE ... WHERE <guard>
RETURNING`, or for the counters `INSERT ... ON CONFLICT DO UPDATE ... WHERE <guard>
RETURNING`, which also creates the period's row), never a read followed by a write: on
Postgres the statement row-locks and re-checks the guard against the latest committed
row, and on SQLite writers serialize, so concurrent callers cannot both pass on stale
numbers. (On SQLite a plain read before a transaction's first write runs on its own,
outside the write transaction, so it takes no lock a writer could wait on.)
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, bindparam, select, text, update

from bot.db.spend_models import BudgetUsageRow, SpendLedgerRow, SpendReservationRow
from bot.db.statements import Executor, dialect_of, table, upsert_insert
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


_RESERVATIONS = table(SpendReservationRow)
_COUNTERS = table(BudgetUsageRow)
_LEDGER = table(SpendLedgerRow)
# The hot statements below are built once per dialect (`bot.db.statements`); the rare
# paths (re-arming, a refusal's read, flags) build theirs when they run.


_NO_SYNC = {"synchronize_session": False}


async def claim_reservation(
    session: Executor, *, call_id: str, kind: str, values: dict[str, Any], now: datetime
) -> int:
    """Create the reservation of `call_id`, or re-arm it if a failed attempt released it.

    Raises `DuplicateCall` if it is held (being answered) or settled (already billed).
    """
    reservation = SpendReservationRow
    fields = {**values, "status": HELD, "reason": None, "created_at": now, "updated_at": now}
    created = (
        await session.execute(
            _claim_statement(dialect_of(session)), {"call_id": call_id, "kind": kind, **fields}
        )
    ).first()
    if created is not None:
        return int(created[0])
    rearmed = (
        await session.execute(
            update(reservation)
            .where(
                reservation.call_id == call_id,
                reservation.kind == kind,
                reservation.status == RELEASED,
            )
            .values(fields)
            .returning(reservation.id)
            .execution_options(**_NO_SYNC)
        )
    ).first()
    if rearmed is not None:
        return int(rearmed[0])
    status = (
        await session.execute(
            select(reservation.status).where(
                reservation.call_id == call_id, reservation.kind == kind
            )
        )
    ).scalar_one()
    raise DuplicateCall(call_id, status)


@functools.cache
def _claim_statement(dialect: str) -> Any:
    return (
        upsert_insert(dialect, _RESERVATIONS)
        .on_conflict_do_nothing(index_elements=["call_id", "kind"])
        .returning(_RESERVATIONS.c.id)
    )


async def transition(
    session: Executor,
    *,
    reservation_id: int,
    old: str,
    new: str,
    now: datetime,
    reason: str | None = None,
) -> ReservedCall | None:
    """Move a reservation from `old` to `new`; its call, or None if it was not `old`."""
    values: dict[str, Any] = {
        "b_id": reservation_id,
        "b_old": old,
        "status": new,
        "updated_at": now,
    }
    if reason is not None:
        values["reason"] = reason[:64]
    row = (await session.execute(_TRANSITION, values)).first()
    return None if row is None else ReservedCall(*row)


#: SET takes the columns given (`status`, `updated_at`, maybe `reason`) from the
#: parameters; RETURNING lists `ReservedCall`'s fields in its order.
_TRANSITION = (
    update(_RESERVATIONS)
    .where(_RESERVATIONS.c.id == bindparam("b_id"), _RESERVATIONS.c.status == bindparam("b_old"))
    .returning(
        _RESERVATIONS.c.call_id,
        _RESERVATIONS.c.kind,
        _RESERVATIONS.c.workspace_id,
        _RESERVATIONS.c.channel_id,
        _RESERVATIONS.c.user_id,
        _RESERVATIONS.c.model,
        _RESERVATIONS.c.period_key,
        _RESERVATIONS.c.amount_micro_usd,
    )
)


@functools.cache
def _counter_statement(dialect: str, *, limited: bool) -> Any:
    """`INSERT` the user's counter row for the period, or add to the row that is there:
    one statement whichever it is (both SQLite >= 3.35 and Postgres have `ON CONFLICT DO
    UPDATE ... RETURNING`). The new row's values are the parameters (`held_micro_usd` is
    never negative there: nothing is held yet to give back); the existing row gets
    `spent + b_spent`, `held + b_held`, and with `limited` only if
    `spent + held + b_held <= b_limit`. Returns the settled spend, or no row."""
    counter = _COUNTERS.c
    statement = upsert_insert(dialect, _COUNTERS)
    return statement.on_conflict_do_update(
        index_elements=["user_id", "period_key"],
        set_={
            "spent_micro_usd": counter.spent_micro_usd + bindparam("b_spent"),
            "held_micro_usd": counter.held_micro_usd + bindparam("b_held"),
            "updated_at": statement.excluded.updated_at,
        },
        where=(
            counter.spent_micro_usd + counter.held_micro_usd + bindparam("b_held")
            <= bindparam("b_limit")
        )
        if limited
        else None,
    ).returning(counter.spent_micro_usd)


def _counter_values(
    *, user_id: str, period_key: str, spent: int, held: int, now: datetime
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "period_key": period_key,
        "spent_micro_usd": spent,
        "held_micro_usd": max(0, held),
        "user_warned": False,
        "admins_alerted": False,
        "updated_at": now,
        "b_spent": spent,
        "b_held": held,
    }


async def hold(
    session: Executor,
    *,
    user_id: str,
    period_key: str,
    amount: int,
    limit: int | None,
    now: datetime,
) -> int | None:
    """Add `amount` to `held` if spent + held + amount fits `limit` (None: no limit).

    Returns the settled spend, or None when the budget cannot cover it. One statement,
    which creates the period's counter row if this is the user's first call in it:

        INSERT INTO budget_usage (..., held) VALUES (..., :amount)
        ON CONFLICT (user_id, period_key) DO UPDATE SET held = held + :amount
        WHERE spent + held + :amount <= :limit
        RETURNING spent

    The conflict branch row-locks the counter on Postgres and checks the condition
    against the latest committed row (a concurrent first insert is waited for, then
    updated), so two reserves of one user can never both pass on stale numbers; SQLite
    writers serialize. The insert branch has no `WHERE`, so an amount that alone exceeds
    the limit is refused here before any statement (a new row holds only `amount`).
    """
    if limit is not None and amount > limit:
        return None
    values = _counter_values(user_id=user_id, period_key=period_key, spent=0, held=amount, now=now)
    if limit is not None:
        values["b_limit"] = limit
    statement = _counter_statement(dialect_of(session), limited=limit is not None)
    row = (await session.execute(statement, values)).first()
    return None if row is None else int(row[0])


async def add_to_counter(
    session: Executor,
    *,
    user_id: str,
    period_key: str,
    spent: int = 0,
    held: int = 0,
    now: datetime,
) -> int:
    """Add the deltas to the user's counter (creating it if missing); the new settled spend.

    One statement (an upsert, see `hold`); a settle, an embedding's charge or a release
    never fails for want of the row.
    """
    values = _counter_values(
        user_id=user_id, period_key=period_key, spent=spent, held=held, now=now
    )
    statement = _counter_statement(dialect_of(session), limited=False)
    return int((await session.execute(statement, values)).scalar_one())


@dataclass(frozen=True)
class Held:
    """`hold_for_call` held the amount: the reservation, and the user's settled spend."""

    reservation_id: int
    spent: int


@dataclass(frozen=True)
class Refused:
    """`hold_for_call` could not: the budget cannot cover the amount. The caller raises
    (rolling back the claim with its transaction; on Postgres nothing was left behind to
    roll back); `spent` is the user's settled spend as it stands."""

    spent: int


async def hold_for_call(
    session: Executor,
    *,
    call_id: str,
    kind: str,
    values: dict[str, Any],
    limit: int | None,
    now: datetime,
) -> Held | Refused:
    """Claim the reservation of `call_id` and hold its amount on the user's counter.

    `values` are the reservation's fields (`user_id`, `period_key` and `amount_micro_usd`
    among them). One sequence for every kind of call (chat, image), so a hold is always
    claimed, counted and limit-checked the same way. Raises `DuplicateCall` if the call
    is held (being answered) or settled (already billed).

    On Postgres it is one statement, the `candor_hold_call` function (migration
    `0013_hold_function`), atomic by itself: a caller needs no transaction around it.
    On SQLite it is the statements below, in the caller's transaction.
    """
    if dialect_of(session) == "postgresql":
        params = {**values, "call_id": call_id, "kind": kind, "b_limit": limit, "now": now}
        return _outcome(call_id, *(await session.execute(_HOLD_CALL, params)).one())
    reservation_id = await claim_reservation(
        session, call_id=call_id, kind=kind, values=values, now=now
    )
    user_id, period_key = str(values["user_id"]), str(values["period_key"])
    spent = await hold(
        session,
        user_id=user_id,
        period_key=period_key,
        amount=int(values["amount_micro_usd"]),
        limit=limit,
        now=now,
    )
    if spent is None:
        return Refused(await counter_spent(session, user_id=user_id, period_key=period_key))
    return Held(reservation_id, spent)


_HOLD_CALL = text(
    "SELECT reservation_id, spent, outcome FROM candor_hold_call("
    ":call_id, :kind, :workspace_id, :channel_id, :user_id, :model, :period_key,"
    " :amount_micro_usd, :b_limit, :now)"
).bindparams(bindparam("b_limit", type_=BigInteger), bindparam("now", type_=DateTime(True)))


def _outcome(call_id: str, reservation_id: int | None, spent: int, outcome: str) -> Held | Refused:
    """`candor_hold_call`'s row as `hold_for_call` returns it (or raises)."""
    if outcome == HELD and reservation_id is not None:
        return Held(int(reservation_id), int(spent))
    if outcome == "refused":
        return Refused(int(spent))
    if outcome in (HELD, SETTLED):
        raise DuplicateCall(call_id, outcome)
    # The row that conflicted was gone when its status was read (deleted meanwhile).
    raise RuntimeError(f"the reservation of call {call_id} vanished while it was claimed")


async def release_hold(
    session: Executor, *, reservation_id: int, reason: str, now: datetime
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


async def counter_spent(session: Executor, *, user_id: str, period_key: str) -> int:
    spent = (
        await session.execute(
            select(BudgetUsageRow.spent_micro_usd).where(
                BudgetUsageRow.user_id == user_id, BudgetUsageRow.period_key == period_key
            )
        )
    ).scalar_one_or_none()
    return int(spent or 0)


async def claim_flag(session: Executor, *, user_id: str, period_key: str, flag: str) -> bool:
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


async def insert_charge(session: Executor, **values: Any) -> bool:
    """Write a settled ledger row unless `(call_id, kind)` is already charged; True if new."""
    statement = _charge_statement(dialect_of(session))
    inserted = (await session.execute(statement, {"status": SETTLED, **values})).first()
    return inserted is not None


@functools.cache
def _charge_statement(dialect: str) -> Any:
    return (
        upsert_insert(dialect, _LEDGER)
        .on_conflict_do_nothing(
            # A literal predicate: Postgres infers a partial index only from the
            # same expression, and a bound parameter is not the same expression.
            index_elements=["call_id", "kind"],
            index_where=text("status = 'settled'"),
        )
        .returning(_LEDGER.c.id)
    )


async def held_reservations(session: Executor, *, older_than: datetime) -> list[tuple[int, str]]:
    """(id, user) of reservations held since before `older_than`."""
    rows = await session.execute(
        select(SpendReservationRow.id, SpendReservationRow.user_id).where(
            SpendReservationRow.status == HELD, SpendReservationRow.created_at < older_than
        )
    )
    return [(int(i), str(u)) for i, u in rows.all()]
