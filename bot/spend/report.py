"""Spend reports: a user's own usage, top users, a chart, and plain-text tables.

Plain functions over the database, with no Slack in them: `/candor usage`, App Home and
the CLI call them (usually through `SpendLedger`'s methods) and render the result.

- `user_usage` reads the user's counter row for the current period (settled and held
  money, exactly what the budget check sees) plus call and token totals from the ledger.
- `top_users` ranks users by settled spend in the current calendar day, week or month.
- `spend_chart_png` draws daily spend of the top users as a PNG. matplotlib is imported
  only there, with the Agg canvas (no display, no global pyplot state).
- `format_usage_table` / `UserUsage.summary` give the text surfaces show.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from io import BytesIO
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from bot.db.engine import Database
from bot.db.spend_models import BudgetUsageRow, SpendLedgerRow
from bot.settings import BudgetSettings
from bot.spend import budgets
from bot.spend.budgets import Period, format_usd, parse_period, period_window
from bot.spend.prices import MICRO

SETTLED = "settled"


@dataclass(frozen=True)
class UserUsage:
    """One user's spend in the current budget period, against their limit."""

    user_id: str
    period: Period
    period_start: datetime
    resets_at: datetime
    spent_micro_usd: int
    held_micro_usd: int
    limit_micro_usd: int | None  # None = unlimited
    budget_source: str
    calls: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def spent_usd(self) -> float:
        return self.spent_micro_usd / MICRO

    @property
    def limit_usd(self) -> float | None:
        return None if self.limit_micro_usd is None else self.limit_micro_usd / MICRO

    @property
    def fraction_used(self) -> float | None:
        if not self.limit_micro_usd:
            return None
        return self.spent_micro_usd / self.limit_micro_usd

    @property
    def remaining_micro_usd(self) -> int | None:
        if self.limit_micro_usd is None:
            return None
        return max(0, self.limit_micro_usd - self.spent_micro_usd - self.held_micro_usd)

    def summary(self, *, you: bool = True) -> str:
        """One sentence, e.g. "You have used $0.42 of your $5.00 monthly budget (8%) ..."."""
        who, whose = ("You have", "your") if you else (f"<@{self.user_id}> has", "their")
        when = self.resets_at.strftime("%Y-%m-%d %H:%M %Z").strip()
        calls = f"{self.calls} call{'s' if self.calls != 1 else ''}"
        if self.limit_micro_usd is None:
            return (
                f"{who} used {format_usd(self.spent_micro_usd)} this {_noun(self.period)} "
                f"({calls}); {whose} budget is unlimited."
            )
        percent = int((self.fraction_used or 0) * 100)
        return (
            f"{who} used {format_usd(self.spent_micro_usd)} of {whose} "
            f"{format_usd(self.limit_micro_usd)} {self.period} budget ({percent}%, {calls}); "
            f"it resets at {when}."
        )


@dataclass(frozen=True)
class UserSpend:
    """One row of a top-users report."""

    user_id: str
    spent_micro_usd: int
    calls: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def spent_usd(self) -> float:
        return self.spent_micro_usd / MICRO


def _noun(period: Period) -> str:
    return {"daily": "day", "weekly": "week", "monthly": "month"}[period]


def _utc(value: datetime) -> datetime:
    """SQLite hands timestamps back naive; they were stored in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def user_usage(
    db: Database, settings: BudgetSettings, *, now: datetime, user_id: str
) -> UserUsage:
    """`user_id`'s spend, holds, calls and tokens in their current budget period."""
    async with db.sessions() as session:
        budget = await budgets.get_budget(session, user_id=user_id, settings=settings)
        window = period_window(now, budget.period, settings.timezone)
        counter = (
            await session.execute(
                select(BudgetUsageRow.spent_micro_usd, BudgetUsageRow.held_micro_usd).where(
                    BudgetUsageRow.user_id == user_id, BudgetUsageRow.period_key == window.key
                )
            )
        ).first()
        ledger = SpendLedgerRow
        calls, prompt, completion = (
            await session.execute(
                select(
                    func.count(ledger.id),
                    func.coalesce(func.sum(ledger.prompt_tokens), 0),
                    func.coalesce(func.sum(ledger.completion_tokens), 0),
                ).where(
                    ledger.user_id == user_id,
                    ledger.status == SETTLED,
                    ledger.created_at >= window.start_utc,
                    ledger.created_at < window.end_utc,
                )
            )
        ).one()
    return UserUsage(
        user_id=user_id,
        period=budget.period,
        period_start=window.start,
        resets_at=window.end,
        spent_micro_usd=int(counter[0]) if counter else 0,
        held_micro_usd=int(counter[1]) if counter else 0,
        limit_micro_usd=None if budget.unlimited else budget.limit_micro_usd,
        budget_source=budget.source,
        calls=int(calls),
        prompt_tokens=int(prompt),
        completion_tokens=int(completion),
    )


async def top_users(
    db: Database,
    settings: BudgetSettings,
    *,
    now: datetime,
    period: str = "month",
    limit: int = 10,
) -> list[UserSpend]:
    """Users ranked by settled spend in the current calendar day / week / month."""
    window = period_window(now, parse_period(period), settings.timezone)
    ledger = SpendLedgerRow
    total = func.sum(ledger.cost_micro_usd)
    query = (
        select(
            ledger.user_id,
            total,
            func.count(ledger.id),
            func.sum(ledger.prompt_tokens),
            func.sum(ledger.completion_tokens),
        )
        .where(
            ledger.user_id.is_not(None),
            ledger.status == SETTLED,
            ledger.created_at >= window.start_utc,
            ledger.created_at < window.end_utc,
        )
        .group_by(ledger.user_id)
        .order_by(total.desc(), ledger.user_id)
        .limit(limit)
    )
    async with db.sessions() as session:
        rows = (await session.execute(query)).all()
    return [
        UserSpend(
            user_id=str(user),
            spent_micro_usd=int(spent or 0),
            calls=int(calls),
            prompt_tokens=int(prompt or 0),
            completion_tokens=int(completion or 0),
        )
        for user, spent, calls, prompt, completion in rows
    ]


async def daily_spend(
    db: Database, settings: BudgetSettings, *, now: datetime, days: int = 30, top: int = 5
) -> tuple[list[date], dict[str, list[int]]]:
    """Daily settled spend (micro-USD) of the `top` spenders over the last `days` days."""
    tz = ZoneInfo(settings.timezone)
    today = now.astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=tz).astimezone(UTC)
    ledger = SpendLedgerRow
    total = func.sum(ledger.cost_micro_usd)
    base = (ledger.status == SETTLED, ledger.created_at >= start, ledger.user_id.is_not(None))
    async with db.sessions() as session:
        users = [
            str(u)
            for (u,) in (
                await session.execute(
                    select(ledger.user_id)
                    .where(*base)
                    .group_by(ledger.user_id)
                    .order_by(total.desc(), ledger.user_id)
                    .limit(top)
                )
            ).all()
        ]
        # Bucketing happens here rather than in SQL: date functions differ per dialect.
        rows = (
            await session.execute(
                select(ledger.user_id, ledger.created_at, ledger.cost_micro_usd).where(
                    *base, ledger.user_id.in_(users)
                )
            )
        ).all()
    axis = [first + timedelta(days=i) for i in range(days)]
    series = {user: [0] * days for user in users}
    for user, created, cost in rows:
        index = (_utc(created).astimezone(tz).date() - first).days
        if 0 <= index < days:
            series[str(user)][index] += int(cost)
    return axis, series


def render_spend_chart(
    axis: Sequence[date], series: dict[str, list[int]], *, title: str = "Daily spend (USD)"
) -> bytes:
    """A line chart of `series` over `axis` as PNG bytes (matplotlib, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    dates = cast(Any, list(axis))  # matplotlib plots dates; its stubs only say numbers
    for user, values in series.items():
        ax.plot(dates, [v / MICRO for v in values], marker="o", markersize=3, label=user)
    ax.set_title(title)
    ax.set_ylabel("USD")
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(loc="upper left", fontsize="small")
    else:
        ax.text(0.5, 0.5, "No spend yet", ha="center", va="center", transform=ax.transAxes)
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


async def spend_chart_png(
    db: Database, settings: BudgetSettings, *, now: datetime, days: int = 30, top: int = 5
) -> bytes:
    """PNG chart of the top spenders' daily spend over the last `days` days."""
    axis, series = await daily_spend(db, settings, now=now, days=days, top=top)
    title = f"Daily spend of the top {len(series)} users, last {days} days (USD)"
    return await asyncio.to_thread(render_spend_chart, axis, series, title=title)


def format_usage_table(rows: Sequence[UserSpend], *, title: str | None = None) -> str:
    """A fixed-width text table of `rows` for the CLI (and Slack code blocks)."""
    header = ("#", "user", "spent", "calls", "prompt tok", "output tok")
    body = [
        (
            str(i),
            row.user_id,
            format_usd(row.spent_micro_usd),
            str(row.calls),
            f"{row.prompt_tokens:,}",
            f"{row.completion_tokens:,}",
        )
        for i, row in enumerate(rows, start=1)
    ]
    widths = [max(len(r[c]) for r in [header, *body]) for c in range(len(header))]
    left = {1}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(widths[c]) if c in left else cell.rjust(widths[c])
            for c, cell in enumerate(cells)
        ).rstrip()

    out = [title] if title else []
    out.append(line(header))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in body)
    if not body:
        out.append("(no spend in this period)")
    return "\n".join(out)
