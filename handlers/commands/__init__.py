"""The `/candor` slash command: parse, check rights, route to a subject, reply ephemerally.

What lives here:
- `__init__` (this module): `register(app, deps)`, the shell-like argument split
  (`shlex`, so long text goes in quotes) and the dispatcher `run`.
- `base`: the `Invocation` and what every subcommand shares (channel, user and value
  arguments).
- one module per subject: `settings`, `knowledge` (`kb …`), `spend`, `admins`.

Imports: the subject modules import `base`, `bot.*` and `handlers.admin_views` /
`handlers.directory`, never each other nor this module; only this module imports them.

Every reply goes through `respond` (the command's `response_url`), which works in DMs and
private channels the bot is not in. `ack()` comes first, within Slack's 3 seconds.
Rights and validation live in `bot.admin` / `bot.admin_settings`; this package only routes.
"""

from __future__ import annotations

import logging
import shlex
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot import admin as admin_mod
from bot.admin import NOT_ADMIN
from bot.deps import Deps
from bot.errors import CandorError
from handlers import admin_views as views
from handlers.commands import admins, knowledge, settings, spend
from handlers.commands.base import Handler, Invocation

__all__ = ["PUBLIC", "ROUTES", "Invocation", "register", "run"]

log = logging.getLogger(__name__)

#: Subcommands anyone may run; everything else is for admins.
PUBLIC = frozenset({"help", "usage"})


def register(app: AsyncApp, deps: Deps) -> None:
    """Register `/candor` and the system-message modal on `app`."""
    service = admin_mod.for_deps(deps)

    async def on_command(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        try:
            args = shlex.split(str(command.get("text") or ""))
        except ValueError as exc:
            await respond(
                text=f"I could not read that command ({exc}): check your quotes. "
                "Try `/candor help`.",
                response_type="ephemeral",
            )
            return
        call = Invocation(
            deps=deps,
            admin=service,
            client=client,
            team_id=str(command.get("team_id") or ""),
            channel_id=str(command.get("channel_id") or ""),
            user_id=str(command.get("user_id") or ""),
            trigger_id=str(command.get("trigger_id") or ""),
            args=args,
        )
        text = await run(call)
        await respond(text=text, response_type="ephemeral")

    app.command("/candor")(on_command)
    settings.register_modal(app, service)


async def run(call: Invocation) -> str:
    """Route one invocation and return the reply text; never raises to Slack."""
    if not call.args:
        return views.USAGE
    name = call.args[0].lower()
    handler = ROUTES.get(name)
    if handler is None:
        return views.USAGE if name == "help" else f"I don't know `{call.args[0]}`.\n{views.USAGE}"
    if name not in PUBLIC and not await call.admin.is_admin(call.user_id, call.lookup):
        return NOT_ADMIN
    call.args = call.args[1:]
    try:
        return await handler(call)
    except CandorError as exc:
        return exc.user_message
    except Exception:
        log.exception("/candor %s failed", name)
        return "Something went wrong on Candor's side; nothing was changed. Please try again."


async def cmd_help(_call: Invocation) -> str:
    return views.USAGE


ROUTES: dict[str, Handler] = {
    "help": cmd_help,
    **settings.ROUTES,
    **knowledge.ROUTES,
    **admins.ROUTES,
    **spend.ROUTES,
}
