"""Jobs that tell admins something: the daily usage digest and late budget alerts.

Both post through ports a surface hands in (`bot/` knows no Slack): the digest through the
`AdminPoster` in `deps.extras[ADMIN_POSTER]` (the Slack runtime sets it), budget alerts
through the spend ledger's `alert` callback (also routed by the Slack runtime). A process
without a surface (the CLI) has nowhere to post: the digest then says so and does nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Protocol

from bot.deps import Deps

log = logging.getLogger(__name__)

#: The `deps.extras` key of the surface's `AdminPoster`.
ADMIN_POSTER = "admin_poster"
#: Rows in the digest's top-users table.
DIGEST_TOP = 10


class AdminPoster(Protocol):
    """Post a message, or a file with a comment, to a channel (a surface provides it)."""

    async def post(self, *, channel: str, text: str) -> None: ...

    async def upload(
        self, *, channel: str, filename: str, content: bytes, title: str, comment: str
    ) -> None: ...


def digest_channel(deps: Deps) -> str:
    """`CANDOR_DIGEST_CHANNEL`, else the review channel; empty when neither is set."""
    return deps.settings.candor.digest_channel or deps.settings.slack.review_channel


async def usage_digest(deps: Deps) -> str:
    """Post the top spenders of the budget period against their budgets, yesterday's
    total, and the daily spend chart, to the admin channel."""
    from bot.spend.budgets import format_usd
    from bot.spend.guard import SpendLedger
    from bot.spend.report import daily_spend

    channel = digest_channel(deps)
    poster: AdminPoster | None = deps.extras.get(ADMIN_POSTER)
    if not channel:
        return "no digest channel set"
    if poster is None:
        return "no surface to post through"
    if not isinstance(deps.spend, SpendLedger):
        return "spend is not tracked"
    ledger = deps.spend
    period = {"daily": "day", "weekly": "week", "monthly": "month"}[deps.settings.budget.period]
    now = deps.clock.now()
    rows = await ledger.top_users(period=period, limit=DIGEST_TOP)
    _axis, series = await daily_spend(deps.db, deps.settings.budget, now=now, days=2, top=1000)
    yesterday = sum(values[-2] for values in series.values() if len(values) >= 2)
    lines = [
        f"*Daily usage digest* for {(now - timedelta(days=1)).date().isoformat()}",
        f"Spent yesterday: {format_usd(yesterday)}.",
    ]
    if not rows:
        lines.append(f"Nobody has spent anything this {period} yet.")
    else:
        lines.append(f"Top users this {period} (spent / budget):")
        for n, row in enumerate(rows, 1):
            usage = await ledger.user_usage(row.user_id)
            used = usage.fraction_used
            share = f" ({used:.0%})" if used is not None else ""
            flag = " :warning:" if used is not None and used >= 1 else ""
            lines.append(
                f"{n}. `{row.user_id}`: {format_usd(row.spent_micro_usd)} / "
                f"{format_usd(usage.limit_micro_usd)}{share}, {row.calls} calls{flag}"
            )
    text = "\n".join(lines)
    await poster.post(channel=channel, text=text)
    if rows:
        png = await ledger.spend_chart_png()
        await poster.upload(
            channel=channel,
            filename="candor-spend.png",
            content=png,
            title="Daily spend of the top users",
            comment="Daily spend of the top users, last 30 days.",
        )
    return f"posted to {channel}: {len(rows)} users"


async def budget_alerts(deps: Deps) -> str:
    """Alert admins about users past the warning threshold who were never alerted (e.g.
    after a budget was lowered): not sent at request time, so this job finds them."""
    from bot.spend.guard import SpendLedger

    if not isinstance(deps.spend, SpendLedger):
        return "spend is not tracked"
    sent = await deps.spend.alert_crossed_thresholds()
    return f"{sent} alerts"
