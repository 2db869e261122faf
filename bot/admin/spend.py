"""Budgets, prices and usage for the admin surface, with audit rows. No Slack here.

The spend engine (`bot.spend.guard`, `bot.spend.budgets`, `bot.spend.prices`, `bot.spend.report`) owns the
rules; this module validates what an admin typed, calls the engine's session-taking
functions and writes the audit row in the *same* transaction, so a budget or price never
changes without its audit entry.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.admin import audit
from bot.admin.settings import InvalidValue
from bot.clock import Clock
from bot.db.engine import Database
from bot.db.spend_models import DEFAULT_BUDGET_KEY
from bot.deps import Deps
from bot.settings import Settings
from bot.spend import budgets, prices
from bot.spend import report as spend_report
from bot.spend.budgets import Budget, Period, format_usd
from bot.spend.prices import ModelPrice, PriceBook
from bot.spend.report import UserSpend, UserUsage

BUDGET_MAX_USD = 100_000.0
PRICE_MAX_USD_PER_M = 10_000.0
TOP_LIMIT = 10


@dataclass(frozen=True)
class BudgetChange:
    """A budget before and after an admin changed it."""

    user_id: str  # "*" for the default
    before: Budget
    after: Budget


def usd_in_range(raw: str, *, maximum: float, message: str, commas: bool = False) -> float:
    """A USD amount from 0 to `maximum` (a leading `$` allowed, and thousands separators
    when `commas`); anything else is `InvalidValue(message)`."""
    text = raw.strip().lstrip("$")
    try:
        value = float(text.replace(",", "") if commas else text)
    except ValueError:
        raise InvalidValue(message) from None
    if not math.isfinite(value) or not 0 <= value <= maximum:
        raise InvalidValue(message)
    return value


def parse_usd(raw: str, *, what: str = "A budget") -> float:
    """Dollars from `10`, `$10` or `2.50`; 0 means unlimited."""
    return usd_in_range(
        raw,
        maximum=BUDGET_MAX_USD,
        commas=True,
        message=(
            f"{what} must be an amount in USD from 0 to {BUDGET_MAX_USD:,.0f} "
            "(0 means unlimited), for example `10` or `2.50`."
        ),
    )


def parse_period(raw: str) -> Period:
    try:
        return budgets.parse_period(raw)
    except ValueError:
        raise InvalidValue(
            f"`{raw}` is not a budget period: use `daily`, `weekly` or `monthly`."
        ) from None


def parse_price(raw: str) -> float:
    return usd_in_range(
        raw,
        maximum=PRICE_MAX_USD_PER_M,
        message=(
            f"A price is USD per 1M tokens, from 0 to {PRICE_MAX_USD_PER_M:,.0f} "
            "(for example `/candor prices set gpt-4o 2.50 1.25 10`)."
        ),
    )


def describe_budget(budget: Budget) -> str:
    """`$10.00 monthly` or `unlimited (monthly)`, with where the value comes from."""
    amount = "unlimited" if budget.unlimited else format_usd(budget.limit_micro_usd)
    source = {"user": "own override", "default": "workspace default", "settings": "built-in"}
    return f"{amount} per {budget.period} period ({source.get(budget.source, budget.source)})"


class SpendAdmin:
    """Admin-side budgets, prices and reports; see the module docstring."""

    def __init__(self, *, settings: Settings, db: Database, clock: Clock) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.prices = PriceBook(settings.budget)

    async def budget(self, user_id: str) -> Budget:
        async with self.db.sessions() as session:
            return await budgets.get_budget(session, user_id=user_id, settings=self.settings.budget)

    async def set_default_budget(
        self, *, actor_id: str, workspace_id: str, usd: float, period: Period | None
    ) -> BudgetChange:
        return await self._change_budget(
            DEFAULT_BUDGET_KEY,
            workspace_id=workspace_id,
            actor_id=actor_id,
            action="budget default",
            target="default",
            apply=lambda session, now: budgets.set_default_budget(
                session, usd=usd, period=period, now=now, by=actor_id
            ),
        )

    async def set_user_budget(
        self, *, actor_id: str, workspace_id: str, user_id: str, usd: float | None
    ) -> BudgetChange:
        return await self._change_budget(
            user_id,
            workspace_id=workspace_id,
            actor_id=actor_id,
            action="budget user",
            target=user_id,
            apply=lambda session, now: budgets.set_user_budget(
                session, user_id=user_id, usd=usd, now=now, by=actor_id
            ),
        )

    async def _change_budget(
        self,
        user_id: str,
        *,
        workspace_id: str,
        actor_id: str,
        action: str,
        target: str,
        apply: Callable[[AsyncSession, datetime], Awaitable[object]],
    ) -> BudgetChange:
        """Apply one budget change and audit it with the budget before and after."""
        now = self.clock.now()
        async with self.db.write() as session:
            before = await budgets.get_budget(
                session, user_id=user_id, settings=self.settings.budget
            )
            await apply(session, now)
            after = await budgets.get_budget(
                session, user_id=user_id, settings=self.settings.budget
            )
            await self._audit(session, workspace_id, actor_id, action, target, before, after)
        return BudgetChange(user_id, before, after)

    async def list_prices(self) -> list[ModelPrice]:
        async with self.db.sessions() as session:
            return await self.prices.list_prices(session, at=self.clock.now())

    async def set_price(
        self,
        *,
        actor_id: str,
        workspace_id: str,
        model: str,
        input_usd: float,
        cached_usd: float,
        output_usd: float,
    ) -> ModelPrice:
        now = self.clock.now()
        async with self.db.write() as session:
            before = await self.prices.price_for(session, model, at=now)
            try:
                after = await prices.set_price(
                    session,
                    model=model,
                    input_usd_per_m=input_usd,
                    output_usd_per_m=output_usd,
                    cached_input_usd_per_m=cached_usd,
                    now=now,
                    by=actor_id,
                )
            except ValueError as exc:
                raise InvalidValue(f"That price was refused: {exc}.") from None
            await audit.record(
                session,
                workspace_id=workspace_id,
                actor_id=actor_id,
                action="prices set",
                target=after.model,
                before=before.as_usd_per_m(),
                after=after.as_usd_per_m(),
                when=now,
            )
        return after

    async def user_usage(self, user_id: str) -> UserUsage:
        return await spend_report.user_usage(
            self.db, self.settings.budget, now=self.clock.now(), user_id=user_id
        )

    async def top_users(self, period: str) -> list[UserSpend]:
        return await spend_report.top_users(
            self.db, self.settings.budget, now=self.clock.now(), period=period, limit=TOP_LIMIT
        )

    async def chart_png(self) -> bytes:
        return await spend_report.spend_chart_png(
            self.db, self.settings.budget, now=self.clock.now()
        )

    async def _audit(
        self,
        session: AsyncSession,
        workspace_id: str,
        actor_id: str,
        action: str,
        target: str,
        before: Budget,
        after: Budget,
    ) -> None:
        await audit.record(
            session,
            workspace_id=workspace_id,
            actor_id=actor_id,
            action=action,
            target=target,
            before=_budget_json(before),
            after=_budget_json(after),
            when=self.clock.now(),
        )


def _budget_json(budget: Budget) -> dict[str, Any]:
    return {"usd": budget.limit_usd, "period": budget.period, "source": budget.source}


def for_deps(deps: Deps) -> SpendAdmin:
    """The process's `SpendAdmin`, kept in `deps.extras` like `bot.admin.service.for_deps`."""
    admin = deps.extras.get("admin_spend")
    if not isinstance(admin, SpendAdmin):
        admin = SpendAdmin(settings=deps.settings, db=deps.db, clock=deps.clock)
        deps.extras["admin_spend"] = admin
    return admin
