"""Budgets and budget periods: which limit applies to a user, and which period it is.

A budget is a limit in micro-USD per calendar period (daily, weekly from Monday, or
monthly) in the configured timezone. There is no reset job: the period is computed from
the injected clock, and the usage counter row of a new period simply does not exist yet.

Which limit applies, first match wins:

1. the user's override row in `spend_budgets`;
2. the default row (`user_id = "*"`), which also carries the period;
3. `Settings.budget` (`CANDOR_BUDGET_DEFAULT_USD`, `CANDOR_BUDGET_PERIOD`).

A limit of 0 means unlimited (spend is still recorded). Changing the period starts new
counters (the key names the period kind), so a switch from monthly to daily does not
carry this month's spend into today.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.spend_models import DEFAULT_BUDGET_KEY, SpendBudgetRow
from bot.db.statements import Executor, table
from bot.settings import BudgetSettings
from bot.spend.prices import MICRO, usd_to_micro

Period = Literal["daily", "weekly", "monthly"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")
_ALIASES: dict[str, Period] = {
    "day": "daily",
    "daily": "daily",
    "week": "weekly",
    "weekly": "weekly",
    "month": "monthly",
    "monthly": "monthly",
}


def parse_period(value: str) -> Period:
    """`day`/`daily`, `week`/`weekly`, `month`/`monthly`; raises ValueError otherwise."""
    try:
        return _ALIASES[value.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown period {value!r}: use daily, weekly or monthly") from None


@dataclass(frozen=True)
class PeriodWindow:
    """One calendar period: [start, end) in the budget's timezone, and its counter key."""

    period: Period
    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        return f"{self.period}:{self.start.date().isoformat()}"

    @property
    def start_utc(self) -> datetime:
        return self.start.astimezone(UTC)

    @property
    def end_utc(self) -> datetime:
        return self.end.astimezone(UTC)


def period_window(now: datetime, period: Period, timezone: str) -> PeriodWindow:
    """The calendar period containing `now` in `timezone` (DST-safe: wall-clock midnights)."""
    tz = ZoneInfo(timezone)
    local = now.astimezone(tz)
    day = local.date()
    if period == "daily":
        first, nxt = day, day + timedelta(days=1)
    elif period == "weekly":
        first = day - timedelta(days=day.weekday())
        nxt = first + timedelta(days=7)
    else:
        first = day.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
    return PeriodWindow(
        period=period,
        start=datetime(first.year, first.month, first.day, tzinfo=tz),
        end=datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz),
    )


@dataclass(frozen=True)
class Budget:
    """The limit that applies to one user, and where it came from."""

    user_id: str
    limit_micro_usd: int  # 0 = unlimited
    period: Period
    source: Literal["user", "default", "settings"]

    @property
    def unlimited(self) -> bool:
        return self.limit_micro_usd <= 0

    @property
    def limit_usd(self) -> float | None:
        return None if self.unlimited else self.limit_micro_usd / MICRO


async def get_budget(session: Executor, *, user_id: str, settings: BudgetSettings) -> Budget:
    """The budget that applies to `user_id` now."""
    rows = await session.execute(_BUDGET_ROWS, {"b_user": user_id})
    return budget_from_rows(rows, user_id=user_id, settings=settings)


def budget_from_rows(
    rows: Iterable[tuple[str, int, str | None]], *, user_id: str, settings: BudgetSettings
) -> Budget:
    """`get_budget`, given the `(user_id, limit_micro_usd, period)` rows of the user and
    of the default (`BUDGET_COLUMNS` where `ROWS_OF_USER`)."""
    limits = {key: (limit, period) for key, limit, period in rows}
    default = limits.get(DEFAULT_BUDGET_KEY)
    period = parse_period(default[1]) if default and default[1] else settings.period
    own = limits.get(user_id) if user_id != DEFAULT_BUDGET_KEY else None
    if own is not None:
        return Budget(user_id, own[0], period, "user")
    if default is not None:
        return Budget(user_id, default[0], period, "default")
    return Budget(user_id, usd_to_micro(settings.default_usd), period, "settings")


_BUDGETS = table(SpendBudgetRow)
#: The columns `budget_from_rows` reads, and the rows: the user's (`b_user`) and the default.
BUDGET_COLUMNS = (_BUDGETS.c.user_id, _BUDGETS.c.limit_micro_usd, _BUDGETS.c.period)
ROWS_OF_USER = _BUDGETS.c.user_id.in_((bindparam("b_user"), DEFAULT_BUDGET_KEY))
_BUDGET_ROWS = select(*BUDGET_COLUMNS).where(ROWS_OF_USER)


async def set_default_budget(
    session: AsyncSession,
    *,
    usd: float,
    period: str | None,
    now: datetime,
    by: str | None = None,
) -> None:
    """Set everyone's budget (0 = unlimited) and, if given, the period."""
    if usd < 0:
        raise ValueError("a budget cannot be negative")
    row = await session.get(SpendBudgetRow, DEFAULT_BUDGET_KEY)
    if row is None:
        row = SpendBudgetRow(user_id=DEFAULT_BUDGET_KEY)
        session.add(row)
    row.limit_micro_usd = usd_to_micro(usd)
    if period is not None:
        row.period = parse_period(period)
    row.updated_at = now
    row.updated_by = by
    await session.flush()


async def set_user_budget(
    session: AsyncSession,
    *,
    user_id: str,
    usd: float | None,
    now: datetime,
    by: str | None = None,
) -> None:
    """Override one user's budget (0 = unlimited); `None` removes the override."""
    if user_id == DEFAULT_BUDGET_KEY:
        raise ValueError("use set_default_budget for the default budget")
    if usd is None:
        await session.execute(delete(SpendBudgetRow).where(SpendBudgetRow.user_id == user_id))
        return
    if usd < 0:
        raise ValueError("a budget cannot be negative")
    row = await session.get(SpendBudgetRow, user_id)
    if row is None:
        row = SpendBudgetRow(user_id=user_id)
        session.add(row)
    row.limit_micro_usd = usd_to_micro(usd)
    row.updated_at = now
    row.updated_by = by
    await session.flush()


def format_usd(micro_usd: int | None) -> str:
    """`$4.10`, or `$0.0004` for amounts under a cent, or `unlimited` for None."""
    if micro_usd is None:
        return "unlimited"
    usd = micro_usd / MICRO
    if 0 < abs(usd) < 0.01:
        return f"${usd:.4f}"
    return f"${usd:,.2f}"
