"""`/candor budget|prices|usage`: budgets, model prices and who spent what.

The numbers come from `bot.admin.spend`; this module reads arguments, renders, and DMs
the spend chart (files cannot be ephemeral). `usage` with no argument is for anyone (their
own spend); the rest of `usage` checks for an admin itself.
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from bot.admin import spend as admin_spend
from bot.admin.service import NOT_ADMIN
from bot.admin.settings import InvalidValue
from bot.db.spend_models import DEFAULT_BUDGET_KEY
from handlers import admin_views as views
from handlers.commands.base import Invocation, Subcommand, user_arg

log = logging.getLogger(__name__)


async def cmd_budget(call: Invocation) -> str:
    usage = "Usage: `/candor budget default 10 [daily|weekly|monthly]` or `/candor budget @user 25|none`"
    spend = admin_spend.for_deps(call.deps)
    if not call.args or call.args[0].lower() == "show":
        who = call.args[1:] if call.args else []
        if who:
            user_id = user_arg(who[0])
            return f"<@{user_id}>'s budget: {admin_spend.describe_budget(await spend.budget(user_id))}."
        default = await spend.budget(DEFAULT_BUDGET_KEY)
        return f"Default budget: {admin_spend.describe_budget(default)}."
    if call.args[0].lower() == "default":
        if len(call.args) not in (2, 3):
            raise InvalidValue(usage)
        usd = admin_spend.parse_usd(call.args[1])
        period = admin_spend.parse_period(call.args[2]) if len(call.args) == 3 else None
        change = await spend.set_default_budget(
            actor_id=call.user_id, workspace_id=call.team_id, usd=usd, period=period
        )
        return views.render_budget_change(change)
    if len(call.args) != 2:
        raise InvalidValue(usage)
    user_id = user_arg(call.args[0])
    raw = call.args[1].lower()
    amount = None if raw in ("none", "default", "reset") else admin_spend.parse_usd(raw)
    change = await spend.set_user_budget(
        actor_id=call.user_id, workspace_id=call.team_id, user_id=user_id, usd=amount
    )
    return views.render_budget_change(change)


async def cmd_prices(call: Invocation) -> str:
    usage = "Usage: `/candor prices show` or `/candor prices set MODEL INPUT CACHED OUTPUT` (USD per 1M tokens)"
    spend = admin_spend.for_deps(call.deps)
    if not call.args or call.args[0].lower() == "show":
        return views.render_prices(await spend.list_prices())
    if call.args[0].lower() != "set" or len(call.args) != 5:
        raise InvalidValue(usage)
    model = call.args[1]
    input_usd, cached_usd, output_usd = (admin_spend.parse_price(a) for a in call.args[2:5])
    price = await spend.set_price(
        actor_id=call.user_id,
        workspace_id=call.team_id,
        model=model,
        input_usd=input_usd,
        cached_usd=cached_usd,
        output_usd=output_usd,
    )
    return views.render_price_set(price)


async def cmd_usage(call: Invocation) -> str:
    spend = admin_spend.for_deps(call.deps)
    if not call.args:
        return (await spend.user_usage(call.user_id)).summary(you=True)
    if not await call.admin.is_admin(call.user_id, call.lookup):
        return NOT_ADMIN
    if call.args[0].lower() != "top":
        if len(call.args) != 1:
            raise InvalidValue(
                "Usage: `/candor usage`, `/candor usage @user`, `/candor usage top [day|week|month]`"
            )
        user_id = user_arg(call.args[0])
        return (await spend.user_usage(user_id)).summary(you=False)
    period = call.args[1] if len(call.args) > 1 else "month"
    admin_spend.parse_period(period)
    rows = await spend.top_users(period)
    text = views.render_top_users(rows, period)
    return text + "\n" + await _send_chart(call, spend)


async def _send_chart(call: Invocation, spend: admin_spend.SpendAdmin) -> str:
    """DM the spend chart to the admin (files can't be ephemeral); say what happened."""
    try:
        png = await spend.chart_png()
        opened = await call.client.conversations_open(users=call.user_id)
        dm = str((opened.get("channel") or {}).get("id") or "")
        await call.client.files_upload_v2(
            channel=dm,
            file=png,
            filename="candor-spend.png",
            title="Candor spend, last 30 days",
        )
    except (SlackApiError, OSError, ValueError) as exc:
        log.warning("Could not send the spend chart: %s", exc)
        return "_I could not send you the spend chart this time._"
    return "I sent you the daily spend chart in a direct message."


SUBCOMMANDS = (
    Subcommand(
        "budget",
        ("budget show [@user]", "budget default 10 [daily|weekly|monthly]", "budget @user 25|none"),
        cmd_budget,
        "spend limits, in USD",
    ),
    Subcommand(
        "prices",
        ("prices show", "prices set MODEL in cached out"),
        cmd_prices,
        "USD per 1M tokens",
    ),
    Subcommand(
        "usage",
        ("usage", "usage @user", "usage top [day|week|month]"),
        cmd_usage,
        "your own spend; another's or the top spenders (admins)",
        admin_only=False,
    ),
)
