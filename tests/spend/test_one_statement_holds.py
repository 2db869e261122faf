"""The counter as one upsert, and a settle that reuses what its reserve read.

Reserving holds money with one `INSERT ... ON CONFLICT DO UPDATE ... WHERE fits`, which
also creates the user's counter for the period; settling adds to it the same way. These
tests pin the edges of that statement (the period's first call, a call dearer than the
whole budget, many first calls at once) and what a settle bills when the price or the
model changed since the reserve. On Postgres (`TEST_DATABASE_URL`) the concurrent ones
run on separate connections of the pool.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, make_url, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.clock import FixedClock
from bot.db.engine import alembic_config, open_database, upgrade
from bot.db.spend_models import SpendReservationRow
from bot.llm import Usage
from bot.ports import OverBudget, Reservation
from bot.spend.guard import SpendLedger
from tests.spend.helpers import hold, ledger_rows


@contextmanager
def statements(ledger: SpendLedger) -> Iterator[list[str]]:
    """The SQL statements the ledger's engine sends inside the block."""
    seen: list[str] = []
    engine = ledger.db.engine.sync_engine

    def on_statement(*args: Any) -> None:
        seen.append(" ".join(str(args[2]).split()))

    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)


async def reservations(ledger: SpendLedger) -> int:
    async with ledger.db.sessions() as session:
        return int((await session.execute(select(func.count(SpendReservationRow.id)))).scalar_one())


async def dear_model(ledger: SpendLedger) -> None:
    """`gpt-4o` at $1,000 per 1M tokens both ways: 500 + 500 tokens hold $1.00."""
    await ledger.set_price("gpt-4o", input_usd_per_m=1000.0, output_usd_per_m=1000.0)


async def test_a_first_call_dearer_than_the_whole_budget_is_refused_and_holds_nothing(
    ledger: SpendLedger,
) -> None:
    await dear_model(ledger)
    await ledger.set_user_budget("U3", 0.50)

    with pytest.raises(OverBudget) as refused:
        await hold(
            ledger, "Ev-big", user="U3", model="gpt-4o", prompt_tokens=500, max_output_tokens=500
        )

    assert refused.value.user_message.startswith(
        "You have used $0.00 of your $0.50 budget for this period, which is not enough"
    )
    usage = await ledger.user_usage("U3")
    assert (usage.spent_micro_usd, usage.held_micro_usd) == (0, 0)
    assert await reservations(ledger) == 0  # the claim rolled back with the refusal
    # A call the budget covers is served: the refusal left nothing behind.
    small = await hold(
        ledger, "Ev-small", user="U3", model="gpt-4o", prompt_tokens=200, max_output_tokens=200
    )
    assert (await ledger.user_usage("U3")).held_micro_usd == small.amount_micro_usd == 400_000


async def test_a_retry_the_budget_no_longer_covers_leaves_the_released_hold_as_it_was(
    ledger: SpendLedger,
) -> None:
    async def deliver() -> Reservation:  # the same Slack event, each time
        return await hold(
            ledger, "Ev-again", user="U3", model="gpt-4o", prompt_tokens=200, max_output_tokens=200
        )

    await dear_model(ledger)
    await ledger.set_user_budget("U3", 1.00)
    first = await deliver()
    await ledger.release(first, reason="llm_error")  # the model failed; Slack will retry
    await ledger.set_user_budget("U3", 0.30)

    with pytest.raises(OverBudget):  # the retry now needs $0.40
        await deliver()

    # The refused re-arm changed nothing: the reservation is still released, nothing held.
    [row] = await ledger_rows(ledger.db, call_id="Ev-again")
    assert (row.status, row.reason, row.cost_micro_usd) == ("released", "llm_error", 0)
    assert (await ledger.user_usage("U3")).held_micro_usd == 0
    async with ledger.db.sessions() as session:
        reservation = (await session.execute(select(SpendReservationRow))).scalar_one()
    assert (reservation.status, reservation.amount_micro_usd) == ("released", 400_000)
    # With the budget back, the same retry is held and billed once.
    await ledger.set_user_budget("U3", 1.00)
    again = await deliver()
    assert again.id == first.id
    await ledger.settle(again, model="gpt-4o", usage=Usage(prompt_tokens=200, completion_tokens=50))
    assert (await ledger.user_usage("U3")).spent_micro_usd == 250_000


async def test_a_first_call_that_fills_the_budget_exactly_is_served_and_nothing_more(
    ledger: SpendLedger,
) -> None:
    await dear_model(ledger)
    await ledger.set_user_budget("U4", 1.00)

    first = await hold(
        ledger, "Ev-full", user="U4", model="gpt-4o", prompt_tokens=500, max_output_tokens=500
    )
    with pytest.raises(OverBudget):
        await hold(
            ledger, "Ev-more", user="U4", model="gpt-4o", prompt_tokens=1, max_output_tokens=0
        )

    # The answer was short: settling frees what it did not use, and that can be spent.
    await ledger.settle(
        first, model="gpt-4o", usage=Usage(prompt_tokens=500, completion_tokens=100)
    )
    usage = await ledger.user_usage("U4")
    assert (usage.spent_micro_usd, usage.held_micro_usd) == (600_000, 0)
    await hold(
        ledger, "Ev-after", user="U4", model="gpt-4o", prompt_tokens=200, max_output_tokens=200
    )
    with pytest.raises(OverBudget) as refused:
        await hold(
            ledger, "Ev-over", user="U4", model="gpt-4o", prompt_tokens=1, max_output_tokens=0
        )
    assert "You have used $0.60 of your $1.00 budget" in refused.value.user_message


async def test_concurrent_first_calls_of_a_period_never_hold_more_than_the_limit(
    ledger: SpendLedger,
) -> None:
    await dear_model(ledger)
    await ledger.set_user_budget("U5", 1.00)  # each call holds $0.40: two fit, not three

    async def one(i: int) -> Reservation | None:
        try:
            return await hold(
                ledger,
                f"Ev{i}",
                user="U5",
                model="gpt-4o",
                prompt_tokens=200,
                max_output_tokens=200,
            )
        except OverBudget:
            return None

    held = [r for r in await asyncio.gather(*(one(i) for i in range(20))) if r is not None]

    assert len(held) == 2
    usage = await ledger.user_usage("U5")
    assert (usage.spent_micro_usd, usage.held_micro_usd) == (0, 800_000)
    assert await reservations(ledger) == 2


async def test_reserve_and_settle_each_run_in_one_short_transaction(ledger: SpendLedger) -> None:
    with statements(ledger) as reserve_sql:
        reservation = await hold(ledger, "Ev-count", user="U6")
    with statements(ledger) as settle_sql:
        await ledger.settle(
            reservation, model="gpt-4o-mini", usage=Usage(prompt_tokens=100, completion_tokens=10)
        )

    # Budget and price are read once, by the reserve, in one statement; each counter
    # change is one upsert. On Postgres the reservation and its hold are one function
    # call, with no BEGIN or COMMIT around the reserve (each statement commits by itself).
    assert "spend_budgets" in reserve_sql[0] and "model_prices" in reserve_sql[0], reserve_sql
    if ledger.db.is_sqlite:
        assert len(reserve_sql) == 3, reserve_sql
    else:
        assert len(reserve_sql) == 2 and "candor_hold_call" in reserve_sql[-1], reserve_sql
    assert [s.split()[0] for s in settle_sql] == ["UPDATE", "INSERT", "INSERT"], settle_sql
    assert "ON CONFLICT" in settle_sql[-1] and "budget_usage" in settle_sql[-1]
    usage = await ledger.user_usage("U6")
    assert (usage.spent_micro_usd, usage.held_micro_usd, usage.calls) == (21, 0, 1)


async def test_a_call_is_billed_at_the_price_in_force_when_it_was_reserved(
    ledger: SpendLedger, clock: FixedClock
) -> None:
    old = await ledger.set_price("gpt-4o", input_usd_per_m=1.0, output_usd_per_m=2.0)
    reservation = await hold(ledger, "Ev-price", user="U7", model="gpt-4o")
    clock.advance(minutes=1)
    await ledger.set_price("gpt-4o", input_usd_per_m=100.0, output_usd_per_m=200.0)

    await ledger.settle(
        reservation, model="gpt-4o", usage=Usage(prompt_tokens=1000, completion_tokens=1000)
    )

    [row] = await ledger_rows(ledger.db, call_id="Ev-price")
    assert (row.cost_micro_usd, row.price_version) == (3000, old.version)


async def test_a_response_from_another_model_is_billed_at_that_models_price(
    ledger: SpendLedger,
) -> None:
    await ledger.set_price("acme-large", input_usd_per_m=10.0, output_usd_per_m=10.0)
    served = await ledger.set_price("acme-small", input_usd_per_m=1.0, output_usd_per_m=1.0)
    reservation = await hold(ledger, "Ev-model", user="U8", model="acme-large")

    await ledger.settle(
        reservation, model="acme-small", usage=Usage(prompt_tokens=1000, completion_tokens=1000)
    )

    [row] = await ledger_rows(ledger.db, call_id="Ev-model")
    assert (row.model, row.cost_micro_usd, row.price_version) == (
        "acme-small",
        2000,
        served.version,
    )
    usage = await ledger.user_usage("U8")
    assert (usage.spent_micro_usd, usage.held_micro_usd) == (2000, 0)


async def test_the_hold_function_comes_and_goes_with_its_migration(database_url: str) -> None:
    """On Postgres the hold is `candor_hold_call` (migration 0013); stepping back to 0012
    drops it, and upgrading brings it back. SQLite has no such function at any revision."""
    if database_url.startswith("sqlite"):
        pytest.skip("Postgres only (TEST_DATABASE_URL)")
    name = f"candor_migrate_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    own = open_database(make_url(database_url).set(database=name).render_as_string(False))

    async def has_function() -> bool:
        async with own.sessions() as session:
            found = await session.execute(
                text("SELECT count(*) FROM pg_proc WHERE proname = 'candor_hold_call'")
            )
            return bool(found.scalar_one())

    def downgrade(sync_conn: Any) -> None:
        from alembic import command

        command.downgrade(alembic_config(sync_conn), "0012_daily")

    try:
        await upgrade(own)
        assert await has_function()
        async with own.engine.begin() as conn:
            await conn.run_sync(downgrade)
        assert not await has_function()
        await upgrade(own)
        assert await has_function()
    finally:
        await own.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
