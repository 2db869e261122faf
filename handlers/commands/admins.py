"""`/candor admins|audit`: who may run Candor's admin commands, and what they changed.

Who counts as an admin (Slack admins and owners, `CANDOR_ADMIN_USERS`, the stored list)
is decided in `bot.admin.service`; the audit log is read from there too.
"""

from __future__ import annotations

from bot.admin import settings as validate
from bot.admin.audit import AUDIT_DEFAULT, AUDIT_MAX
from bot.admin.settings import InvalidValue
from handlers import admin_views as views
from handlers.commands.base import Invocation, Subcommand, one_value, user_arg


async def cmd_admins(call: Invocation) -> str:
    if not call.args or call.args[0].lower() in ("list", "show"):
        return views.render_admins(await call.admin.list_admins())
    action = call.args[0].lower()
    if action not in ("add", "remove") or len(call.args) != 2:
        raise InvalidValue(
            "Usage: `/candor admins`, `/candor admins add @user`, `/candor admins remove @user`"
        )
    user_id = user_arg(call.args[1])
    if action == "add":
        added = await call.admin.add_admin(
            actor_id=call.user_id, workspace_id=call.team_id, user_id=user_id, lookup=call.lookup
        )
        return (
            f"<@{user_id}> is now a Candor admin."
            if added
            else f"<@{user_id}> is already on the admin list."
        )
    removed = await call.admin.remove_admin(
        actor_id=call.user_id, workspace_id=call.team_id, user_id=user_id
    )
    if removed:
        return f"<@{user_id}> is no longer on Candor's admin list."
    return (
        f"<@{user_id}> was not on Candor's admin list (Slack admins and owners always are admins)."
    )


async def cmd_audit(call: Invocation) -> str:
    limit = AUDIT_DEFAULT
    if call.args:
        limit = validate.parse_int(
            one_value(call, "/candor audit [N]"), low=1, high=AUDIT_MAX, what="N"
        )
    return views.render_audit(await call.admin.audit_log(limit))


SUBCOMMANDS = (
    Subcommand(
        "admins",
        ("admins", "admins add @user", "admins remove @user"),
        cmd_admins,
        "Slack admins and owners always are admins",
    ),
    Subcommand("audit", ("audit [N]",), cmd_audit, "the latest changes"),
)
