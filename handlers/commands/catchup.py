"""`/candor catchup [#channel] [since]`: what happened in a channel, for anyone who is in it.

`since` is `2h`, `3d`, `1w`, `yesterday`, `today` or an ISO date (the last 24 hours when
left out); the channel is the current one unless named. The reply is ephemeral (the
command's `response_url`); the work is `handlers.daily.catch_up`.
"""

from __future__ import annotations

from bot.admin.settings import InvalidValue
from handlers import daily
from handlers.commands.base import Invocation, Subcommand, pop_target


async def cmd_catchup(call: Invocation) -> str:
    target = await pop_target(call)
    if target.is_default:
        raise InvalidValue(daily.NAME_A_CHANNEL)
    since = " ".join(call.args).strip() or None
    return await daily.catch_up(
        call.deps,
        team_id=call.team_id,
        user_id=call.user_id,
        channel_id=target.channel_id,
        since=since,
    )


SUBCOMMANDS = (
    Subcommand(
        "catchup",
        ("catchup [#channel] [2h|3d|yesterday|2026-11-20]",),
        cmd_catchup,
        "what happened in a channel you are in (default: the last 24 hours)",
        admin_only=False,
    ),
)
