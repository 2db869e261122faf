"""The spend ledger: per-user budgets enforced before the LLM call, billed after it.

`SpendLedger` implements `bot.ports.SpendGuard` for the conversation manager:

reserve
    Reads the user's budget and the model's price (one statement), prices the worst
    case (the counted prompt plus the answer's `max_tokens`, no cache discount) and,
    atomically, claims the call in `spend_reservations` (unique per Slack event and
    kind) and holds the money on the user's counter row for this period with one
    conditional statement, which also creates the row on the period's first call:

        INSERT INTO budget_usage (user_id, period_key, held, ...) VALUES (..., :estimate)
        ON CONFLICT (user_id, period_key) DO UPDATE SET held = held + :estimate
        WHERE spent + held + :estimate <= :limit
        RETURNING spent

    On Postgres the conflict branch row-locks the counter and re-checks the condition
    against the committed row after any concurrent writer, so two requests of one user
    can never both pass on stale numbers; on SQLite writers serialize on the database
    lock. An estimate above the limit on its own is refused before the statement (a new
    row is not checked by it). No row back means over budget: the transaction rolls back
    and `OverBudget` tells the user what they spent, their limit and when the period
    resets. No LLM call happens. On Postgres the claim and the hold are one statement, a
    function (`ledger.hold_for_call`): the reserve is two round trips (the budget and
    price read, the hold) with no transaction around them, instead of six.
settle
    Moves the hold to `spent` at the actual cost from the API's `usage` (cached tokens
    at the cached price; counts marked estimated when the server sent none) and writes
    the ledger row, in one transaction of three statements: the reservation's state
    change, the ledger row, the counter upsert. The price and budget are the ones the
    reserve read (`PricedReservation`), unless the response names another model or a
    service tier with a price of its own. A reservation settles once: a second settle
    is a no-op.
release
    Returns the hold when the call failed and records a zero-cost `released` row.

A retried Slack event is never charged twice: the reservation is unique per
`(event_id, kind)` and the ledger has a unique index on settled `(call_id, kind)`. A
retry after a *released* attempt re-arms that reservation; a retry of a held or settled
one raises `DuplicateCall` before any LLM call. Calls without an event get a generated id.

When a user's settled spend reaches `warn_at_fraction` of the limit, the next reserve in
that period carries a one-time notice in `Reservation.notices`, and admins are alerted
once per period through the injected async `alert(text)` callback (handlers post it).

The SQL lives in `bot.spend.ledger`; reports and admin functions in `bot.spend.report`,
`bot.spend.budgets` and `bot.spend.prices`. `SpendLedger` exposes them as methods so surfaces need
only this one object.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, DateTime, String, literal, null, select, union_all

from bot.clock import Clock
from bot.db.engine import Database
from bot.db.models import ChannelSettingsRow
from bot.db.spend_models import DEFAULT_BUDGET_KEY, SpendLedgerRow
from bot.db.statements import Executor, StoreAlso
from bot.llm import Usage
from bot.ports import OverBudget, Reservation
from bot.settings import Settings
from bot.spend import budgets, ledger, prices
from bot.spend import report as spend_report
from bot.spend.budgets import Budget, PeriodWindow, format_usd, period_window
from bot.spend.ledger import CHAT, EMBEDDING, HELD, RELEASED, SETTLED, DuplicateCall, ReservedCall
from bot.spend.prices import MICRO, ModelPrice, PriceBook
from bot.spend.report import UserSpend, UserUsage

__all__ = [
    "AlertCallback",
    "DuplicateCall",
    "PricedReservation",
    "SpendLedger",
    "UserSpend",
    "UserUsage",
]

log = logging.getLogger(__name__)

AlertCallback = Callable[[str], Awaitable[None]]


async def _no_alert(_text: str) -> None:
    return None


@dataclass(frozen=True)
class PricedReservation(Reservation):
    """A chat reservation that carries what its reserve read: the model priced, its price
    (with the version the ledger records) and the user's budget, so `settle` reuses them
    instead of reading them again. Only this process's `settle` sees them; a reservation
    settled from its id alone (`release_stale`) reads them."""

    model: str = ""
    price: ModelPrice | None = field(default=None, compare=False, repr=False)
    budget: Budget | None = field(default=None, compare=False, repr=False)


class SpendLedger:
    """Per-user budgets and the spend ledger; implements `SpendGuard`. See module docs.

    `alert` is awaited with one sentence for admins when a user crosses the warning
    threshold (once per user and period); surfaces post it. It defaults to a no-op.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Clock,
        alert: AlertCallback | None = None,
        *,
        price_book: PriceBook | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.alert: AlertCallback = alert or _no_alert
        #: Told (model, usage, cost in micro-USD) after each billed call; metrics set it.
        self.on_billed: Callable[[str, Usage, int], None] | None = None
        self.prices = price_book or PriceBook(settings.budget)

    # --- SpendGuard ------------------------------------------------------------------

    async def reserve(
        self,
        *,
        workspace_id: str,
        channel_id: str,
        user_id: str,
        model: str,
        prompt_tokens: int,
        max_output_tokens: int,
        event_id: str | None,
    ) -> Reservation:
        """Hold the worst-case cost of one chat call, or raise `OverBudget`/`DuplicateCall`."""
        now = self._now()
        notices: list[str] = []
        alert_text: str | None = None
        # One session: on Postgres each statement commits by itself (the hold is one
        # statement, atomic by itself; `ledger.hold_for_call`), on SQLite it is one write
        # transaction, whose reads run before the driver begins it at the first write,
        # so they lock nothing.
        async with self.db.one_statement(writes=True, ahead=True) as session:
            budget, price = await self._budget_and_price(session, user_id, model, at=now)
            window = self._window(now, budget)
            estimate = price.cost_micro_usd(
                prompt_tokens=prompt_tokens, completion_tokens=max_output_tokens
            )
            key = window.key
            held = await ledger.hold_for_call(
                session,
                call_id=event_id or ledger.generated_call_id(),
                kind=CHAT,
                values={
                    "workspace_id": workspace_id,
                    "channel_id": channel_id,
                    "user_id": user_id,
                    "model": model,
                    "period_key": key,
                    "amount_micro_usd": estimate,
                },
                limit=None if budget.unlimited else budget.limit_micro_usd,
                now=now,
            )
            if isinstance(held, ledger.Refused):
                log.info(
                    "Refused %s: %d spent + %d needed > %d limit (micro-USD).",
                    user_id,
                    held.spent,
                    estimate,
                    budget.limit_micro_usd,
                )
                # Raising inside a transaction rolls the claim back too.
                raise OverBudget(
                    spent_usd=held.spent / MICRO,
                    limit_usd=budget.limit_micro_usd / MICRO,
                    resets_at=window.end,
                )
            reservation_id, spent = held.reservation_id, held.spent
            if self._past_threshold(spent, budget):
                if await ledger.claim_flag(
                    session, user_id=user_id, period_key=key, flag="user_warned"
                ):
                    notices.append(_user_notice(spent, budget))
                if await ledger.claim_flag(
                    session, user_id=user_id, period_key=key, flag="admins_alerted"
                ):
                    alert_text = _admin_alert(user_id, spent, budget)
        if alert_text is not None:
            await self._send_alert(alert_text)
        return PricedReservation(
            id=reservation_id,
            user_id=user_id,
            amount_micro_usd=estimate,
            notices=tuple(notices),
            model=model,
            price=price,
            budget=budget,
        )

    async def settle(
        self,
        reservation: Reservation,
        *,
        model: str,
        usage: Usage,
        also: StoreAlso | None = None,
        ahead: bool = True,
    ) -> None:
        """Bill the call at its actual cost; a second settle of one reservation does nothing.

        The price and budget come from the reserve (`PricedReservation`) when the response
        names the model that was priced and no service tier with a price of its own:
        the call is billed at the price in force when it was reserved, and the settle is
        one transaction of three statements. Otherwise they are read in that transaction.

        `also` runs in the same transaction after the bill (the conversation manager
        stores the answer there: one commit for both). If it raises, nothing of the
        transaction stays and the error propagates; once the transaction is committed,
        nothing here raises.

        `ahead`: the answer waits on this bill, so it goes before new messages' claims in
        the writer gate (`Database.write`); False for a bill written after the answer
        was shown, which nobody waits on.
        """
        if reservation.id is None:
            return
        now = self._now()
        carried = reservation if isinstance(reservation, PricedReservation) else None
        price: ModelPrice | None = None
        if (
            carried is not None
            and carried.price is not None
            and carried.model == model
            and carried.price.applies_at_tier(usage.service_tier)
        ):
            price = carried.price
        budget = carried.budget if carried is not None else None
        alert_text: str | None = None
        async with self.db.write_statements(ahead=ahead) as session:
            row = await ledger.transition(
                session, reservation_id=reservation.id, old=HELD, new=SETTLED, now=now
            )
            was_held = row is not None
            if row is None:
                # Released meanwhile (e.g. by the stale-hold sweep): the model still
                # answered, so the spend is billed; only nothing is held any more.
                row = await ledger.transition(
                    session, reservation_id=reservation.id, old=RELEASED, new=SETTLED, now=now
                )
            if row is None:
                log.info("Reservation %s is already settled; not billing it again.", reservation.id)
                if also is not None:
                    await also(session)
                return
            if price is None:
                price = await self.prices.price_for(
                    session, model, at=now, service_tier=usage.service_tier
                )
            if budget is None:
                budget = await self._budget(session, row.user_id)
            cost = price.cost_micro_usd(
                prompt_tokens=usage.prompt_tokens,
                cached_tokens=usage.cached_tokens,
                completion_tokens=usage.completion_tokens,
            )
            charged = await ledger.insert_charge(
                session,
                **_ledger_values(row, model=model, usage=usage, cost=cost, now=now),
                price_version=price.version,
            )
            if not charged:  # pragma: no cover - the reservation states make this unreachable
                log.error("Call %s was already charged; releasing its hold only.", row.call_id)
                cost = 0
            spent = await ledger.add_to_counter(
                session,
                user_id=row.user_id,
                period_key=row.period_key,
                spent=cost,
                held=-row.amount_micro_usd if was_held else 0,
                now=now,
            )
            if self._past_threshold(spent, budget) and await ledger.claim_flag(
                session, user_id=row.user_id, period_key=row.period_key, flag="admins_alerted"
            ):
                alert_text = _admin_alert(row.user_id, spent, budget)
            if also is not None:
                await also(session)
        if self.on_billed is not None:
            try:
                self.on_billed(model, usage, cost)
            except Exception:  # metrics must not fail a committed bill
                log.exception("Could not count the bill in the metrics.")
        if alert_text is not None:
            await self._send_alert(alert_text)

    async def release(self, reservation: Reservation, *, reason: str) -> None:
        """Give the held money back (the call failed); records a zero-cost ledger row."""
        if reservation.id is None:
            return
        now = self._now()
        async with self.db.write(quick=True, ahead=True) as session:
            row = await ledger.release_hold(
                session, reservation_id=reservation.id, reason=reason, now=now
            )
            if row is None:
                return
            session.add(
                SpendLedgerRow(
                    **_ledger_values(row, model=row.model, usage=Usage(), cost=0, now=now),
                    price_version="-",
                    status=RELEASED,
                    reason=reason[:64],
                )
            )

    # --- embeddings and housekeeping ---------------------------------------------------

    async def record_embedding(
        self,
        *,
        workspace_id: str,
        model: str,
        tokens: int,
        user_id: str | None = None,
        channel_id: str | None = None,
        event_id: str | None = None,
        estimated: bool = False,
    ) -> int:
        """Bill one embeddings call (no reservation); returns its cost in micro-USD.

        With a `user_id` the cost counts against that user's budget (it can push them
        past it: the call already happened); ingestion runs without one. The same
        `event_id` is billed once: a repeat returns 0.
        """
        now = self._now()
        async with self.db.write() as session:
            # Reads before the first write: one session (see `reserve`).
            price = await self.prices.price_for(session, model, at=now)
            budget = await self._budget(session, user_id) if user_id else None
            cost = price.cost_micro_usd(prompt_tokens=tokens)
            charged = await ledger.insert_charge(
                session,
                call_id=event_id or ledger.generated_call_id(),
                kind=EMBEDDING,
                workspace_id=workspace_id,
                user_id=user_id,
                channel_id=channel_id,
                model=model,
                prompt_tokens=tokens,
                cost_micro_usd=cost,
                price_version=price.version,
                estimated=estimated,
                created_at=now,
            )
            if not charged:
                return 0
            if user_id and budget is not None:
                key = self._window(now, budget).key
                await ledger.add_to_counter(
                    session, user_id=user_id, period_key=key, spent=cost, now=now
                )
        return cost

    async def release_stale(self, *, older_than: timedelta = timedelta(minutes=15)) -> int:
        """Release holds a crashed process left behind (for a scheduler job); how many."""
        async with self.db.sessions() as session:
            stale = await ledger.held_reservations(session, older_than=self._now() - older_than)
        for reservation_id, user_id in stale:
            await self.release(
                Reservation(id=reservation_id, user_id=user_id, amount_micro_usd=0),
                reason="stale",
            )
        return len(stale)

    # --- admin and reports (thin wrappers so surfaces need one object) -----------------

    async def alert_crossed_thresholds(self) -> int:
        """Alert admins about users past the warning threshold who were never alerted this
        period (e.g. because an admin lowered their budget after they spent); returns how
        many. Run by the `budget_alerts` job, not at request time; the once-per-period flag
        keeps it from repeating an alert `reserve` or `settle` already sent."""
        from bot.db.spend_models import BudgetUsageRow

        now = self._now()
        async with self.db.sessions() as session:
            rows = (
                await session.execute(
                    select(
                        BudgetUsageRow.user_id,
                        BudgetUsageRow.period_key,
                        BudgetUsageRow.spent_micro_usd,
                    ).where(
                        BudgetUsageRow.admins_alerted.is_(False),
                        BudgetUsageRow.spent_micro_usd > 0,
                    )
                )
            ).all()
            due: list[tuple[str, str, int, Budget]] = []
            for (
                user_id,
                period_key,
                spent,
            ) in rows:
                budget = await self._budget(session, user_id)
                if period_key != self._window(now, budget).key:
                    continue  # a past period: too late to warn about
                if self._past_threshold(int(spent), budget):
                    due.append((user_id, period_key, int(spent), budget))
        sent = 0
        for user_id, period_key, spent, budget in due:
            async with self.db.write() as session:
                won = await ledger.claim_flag(
                    session, user_id=user_id, period_key=period_key, flag="admins_alerted"
                )
            if won:
                sent += 1
                await self._send_alert(_admin_alert(user_id, spent, budget))
        return sent

    async def get_budget(self, user_id: str) -> Budget:
        """The budget that applies to `user_id` (`*` for the default)."""
        async with self.db.sessions() as session:
            return await self._budget(session, user_id)

    async def set_default_budget(
        self, usd: float, period: str | None = None, *, by: str | None = None
    ) -> Budget:
        """Everyone's budget in USD per period (0 = unlimited); `period` daily/weekly/monthly."""
        async with self.db.write() as session:
            await budgets.set_default_budget(
                session, usd=usd, period=period, now=self._now(), by=by
            )
        return await self.get_budget(DEFAULT_BUDGET_KEY)

    async def set_user_budget(
        self, user_id: str, usd: float | None, *, by: str | None = None
    ) -> Budget:
        """One user's budget in USD (0 = unlimited); None removes the override."""
        async with self.db.write() as session:
            await budgets.set_user_budget(session, user_id=user_id, usd=usd, now=self._now(), by=by)
        return await self.get_budget(user_id)

    async def set_price(
        self,
        model: str,
        *,
        input_usd_per_m: float,
        output_usd_per_m: float,
        cached_input_usd_per_m: float | None = None,
        by: str | None = None,
    ) -> ModelPrice:
        """Override or add a model's price (USD per 1M tokens; cached defaults to input)."""
        async with self.db.write() as session:
            return await prices.set_price(
                session,
                model=model,
                input_usd_per_m=input_usd_per_m,
                output_usd_per_m=output_usd_per_m,
                cached_input_usd_per_m=cached_input_usd_per_m,
                now=self._now(),
                by=by,
            )

    async def list_prices(self) -> list[ModelPrice]:
        """The price of every model configured or in use, the local table and every
        override, each as a call now would be billed, sorted by model."""
        candor = self.settings.candor
        async with self.db.sessions() as session:
            in_use = await session.execute(
                select(ChannelSettingsRow.model).where(ChannelSettingsRow.model.is_not(None))
            )
            models = [
                candor.default_model,
                *candor.allowed_model_list(),
                self.settings.openai.embedding_model,
                *(m for m in in_use.scalars() if m),
            ]
            return await self.prices.list_prices(session, models=models, at=self._now())

    async def remove_price_override(self, model: str) -> bool:
        """Back to the shipped price (or the default); True if there was an override."""
        async with self.db.write() as session:
            return await prices.remove_price_override(session, model=model)

    async def user_usage(self, user_id: str) -> UserUsage:
        """`user_id`'s spend this period against their budget (for them or for admins)."""
        return await spend_report.user_usage(
            self.db, self.settings.budget, now=self._now(), user_id=user_id
        )

    async def top_users(self, period: str = "month", limit: int = 10) -> list[UserSpend]:
        """Top spenders of the current day / week / month."""
        return await spend_report.top_users(
            self.db, self.settings.budget, now=self._now(), period=period, limit=limit
        )

    async def spend_chart_png(self, *, days: int = 30, top: int = 5) -> bytes:
        """PNG line chart of the top spenders' daily spend."""
        return await spend_report.spend_chart_png(
            self.db, self.settings.budget, now=self._now(), days=days, top=top
        )

    # --- internals -------------------------------------------------------------------

    def _now(self) -> datetime:
        return self.clock.now().astimezone(UTC)

    def _window(self, now: datetime, budget: Budget) -> PeriodWindow:
        return period_window(now, budget.period, self.settings.budget.timezone)

    async def _budget(self, session: Executor, user_id: str) -> Budget:
        return await budgets.get_budget(session, user_id=user_id, settings=self.settings.budget)

    async def _budget_and_price(
        self, session: Executor, user_id: str, model: str, *, at: datetime
    ) -> tuple[Budget, ModelPrice]:
        """`_budget` and `prices.price_for`, read in one statement (`_BUDGET_AND_PRICES`)."""
        rows = await session.execute(
            _BUDGET_AND_PRICES, {"b_user": user_id, "b_names": prices.override_names(model)}
        )
        limits: list[tuple[str, int, str | None]] = []
        overrides = []
        for row in rows:
            if row.kind == _BUDGET_ROW:
                limits.append((row.model, row.input_micro_usd_per_m, row.period))
            else:
                overrides.append(row)
        budget = budgets.budget_from_rows(limits, user_id=user_id, settings=self.settings.budget)
        return budget, self.prices.resolve(model, overrides, at=at)

    def _past_threshold(self, spent: int, budget: Budget) -> bool:
        if budget.unlimited:
            return False
        fraction = self.settings.budget.warn_at_fraction
        return 0 < fraction and spent >= math.ceil(budget.limit_micro_usd * fraction)

    async def _send_alert(self, text: str) -> None:
        log.warning("%s", text)
        try:
            await self.alert(text)
        except Exception:
            # An alert that cannot be posted must not cost the user their answer.
            log.exception("Could not deliver the budget alert.")


_BUDGET_ROW = "budget"
#: What a reserve reads, in one statement (one round trip instead of two): the model's
#: price overrides (`prices.OVERRIDE_COLUMNS` of `b_names`), and the budget rows of the
#: user (`b_user`) and the default, as rows of kind `budget` carrying the user in `model`,
#: the limit in `input_micro_usd_per_m` and the period in `period`.
_BUDGET_AND_PRICES = union_all(
    select(
        literal("price", String).label("kind"),
        *prices.OVERRIDE_COLUMNS,
        null().cast(String).label("period"),
    ).where(prices.OVERRIDES_OF_NAMES),
    select(
        literal(_BUDGET_ROW, String),
        budgets.BUDGET_COLUMNS[0],
        budgets.BUDGET_COLUMNS[1],
        null().cast(BigInteger),
        null().cast(BigInteger),
        null().cast(DateTime(timezone=True)),
        budgets.BUDGET_COLUMNS[2],
    ).where(budgets.ROWS_OF_USER),
)


def _ledger_values(
    row: ReservedCall, *, model: str, usage: Usage, cost: int, now: datetime
) -> dict[str, Any]:
    return {
        "call_id": row.call_id,
        "kind": row.kind,
        "workspace_id": row.workspace_id,
        "user_id": row.user_id,
        "channel_id": row.channel_id,
        "model": model,
        "prompt_tokens": usage.prompt_tokens,
        "cached_tokens": usage.cached_tokens,
        "completion_tokens": usage.completion_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cost_micro_usd": cost,
        "estimated": usage.estimated,
        "created_at": now,
    }


def _percent(spent: int, budget: Budget) -> int:
    return int(spent * 100 // budget.limit_micro_usd)


def _user_notice(spent: int, budget: Budget) -> str:
    return (
        f"Heads-up: you have used {_percent(spent, budget)}% of your "
        f"{format_usd(budget.limit_micro_usd)} {budget.period} budget for this period."
    )


def _admin_alert(user_id: str, spent: int, budget: Budget) -> str:
    return (
        f"Budget alert: <@{user_id}> has used {_percent(spent, budget)}% "
        f"({format_usd(spent)}) of their {format_usd(budget.limit_micro_usd)} "
        f"{budget.period} budget."
    )
