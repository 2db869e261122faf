"""`/candor experts|review-channel`: who Ask a human mentions, and where reviews go.

    /candor experts [#channel]                 show the channel's experts
    /candor experts #channel @a @b             set them (audited)
    /candor experts #channel none              clear them (audited)
    /candor review-channel #reviews [#channel] where the channel's flagged and 👎 answers go
    /candor review-channel none [#channel]     back to the workspace default

Both are for admins. The rules live in `bot.review.experts` and `bot.admin.settings`; this module only reads
arguments and renders the result.
"""

from __future__ import annotations

from bot.admin import settings as validate
from bot.admin.settings import InvalidValue
from bot.review import experts as experts_mod
from handlers.commands.base import Invocation, Subcommand, pop_target, set_values, user_arg

_NONE = ("none", "clear", "nobody", "-")


async def cmd_experts(call: Invocation) -> str:
    target = await pop_target(call)
    if target.is_default:
        raise InvalidValue("Experts are set per channel: name a channel, e.g. `#eng`.")
    db = call.deps.db
    if not call.args or [a.lower() for a in call.args] in (["show"], ["list"]):
        async with db.sessions() as session:
            names = await experts_mod.list_experts(
                session, workspace_id=target.workspace_id, channel_id=target.channel_id
            )
        if not names:
            return (
                f"{target.label} has no experts: Ask a human goes to the review channel only. "
                f"Set some with `/candor experts {target.label} @a @b`."
            )
        return f"Experts of {target.label}: " + ", ".join(f"<@{n}>" for n in names) + "."
    if [a.lower() for a in call.args] in ([n] for n in _NONE):
        users: list[str] = []
    else:
        users = [user_arg(arg) for arg in call.args]
    try:
        async with db.write() as session:
            before, after = await experts_mod.set_experts(
                session,
                workspace_id=target.workspace_id,
                channel_id=target.channel_id,
                user_ids=users,
                actor_id=call.user_id,
                now=call.deps.clock.now(),
            )
    except ValueError as exc:
        raise InvalidValue(str(exc)) from None
    if before == after:
        return f"Nothing changed: the experts of {target.label} are already those."
    if not after:
        return f"{target.label} has no experts now: Ask a human goes to the review channel only."
    return (
        f"Experts of {target.label} are now "
        + ", ".join(f"<@{n}>" for n in after)
        + ": Ask a human will mention them in the thread."
    )


async def cmd_review_channel(call: Invocation) -> str:
    usage = "Usage: `/candor review-channel #reviews|none [#channel | --workspace]`"
    if not call.args:
        raise InvalidValue(usage)
    raw = call.args[0]
    target = await pop_target(call, skip=1)
    if len(call.args) != 1:
        raise InvalidValue(usage)
    value = None if raw.lower() in _NONE else validate.parse_review_channel(raw)
    return await set_values(call, target, "review-channel", {"review_channel": value})


SUBCOMMANDS = (
    Subcommand(
        "experts",
        ("experts [#channel]", "experts #channel @a @b", "experts #channel none"),
        cmd_experts,
        "who Ask a human mentions in the thread",
    ),
    Subcommand(
        "review-channel",
        ("review-channel #reviews|none [#channel]",),
        cmd_review_channel,
        "where flagged and 👎 answers go (else SLACK_REVIEW_CHANNEL)",
    ),
)
