"""`candor usage`: the spend tables from the command line (the same as `/candor usage`).

candor usage                      top users this period (the budget period)
candor usage --period day         top users today (day, week or month)
candor usage --user U123          one user's spend against their budget
candor usage --chart spend.png    also write the daily spend chart of the top users
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bot.settings import ConfigError, Settings

PERIODS = ("day", "week", "month")
_FROM_BUDGET = {"daily": "day", "weekly": "week", "monthly": "month"}


def add_usage_parser(sub: Any) -> None:
    usage = sub.add_parser("usage", help="show token spend per user")
    usage.add_argument("--user", help="one user's spend this period against their budget")
    usage.add_argument("--period", choices=PERIODS, help="period of the top-users table")
    usage.add_argument("--limit", type=int, default=10, help="rows in the top-users table")
    usage.add_argument("--chart", type=Path, help="write the daily spend chart (PNG) here")


async def run_usage(args: argparse.Namespace, settings: Settings) -> int:
    from bot.deps import build_deps
    from bot.spend.guard import SpendLedger
    from bot.spend.report import format_usage_table

    if args.limit < 1:
        raise ConfigError("--limit must be at least 1.")
    deps = await build_deps(settings)
    try:
        ledger = deps.spend
        assert isinstance(ledger, SpendLedger)
        if args.user:
            print((await ledger.user_usage(args.user)).summary(you=False))
            return 0
        period = args.period or _FROM_BUDGET[settings.budget.period]
        rows = await ledger.top_users(period=period, limit=args.limit)
        if rows:
            print(format_usage_table(rows, title=f"Top users this {period}"))
        else:
            print(f"Nobody has spent anything this {period} yet.")
        if args.chart is not None:
            args.chart.write_bytes(await ledger.spend_chart_png())
            print(f"Wrote the daily spend chart to {args.chart}.")
        return 0
    finally:
        await deps.close()
