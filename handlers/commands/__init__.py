"""The `/candor` slash command: parse, check rights, route to a subject, reply ephemerally.

What lives here:
- `__init__` (this module): `register(app, deps)`, the shell-like argument split
  (`shlex`, so long text goes in quotes) and the dispatcher `run`.
- `base`: the `Invocation`, the `Subcommand` record and its `Registry`, and what every
  subcommand shares (channel, user and value arguments).
- one module per subject, each listing its `SUBCOMMANDS`: `settings`, `knowledge`
  (`kb …`), `spend`, `admins`, `catchup` (for anyone), and more. A new subcommand is
  one more record there; the routing, the admin check and the usage text
  (`/candor help`) all come from the records.

Imports: the subject modules import `base`, `bot.*`, `knowledge` and
`handlers.admin_views` / `handlers.directory`, never each other nor this module; only
this module imports them.

Every reply goes through `respond` (the command's `response_url`), which works in DMs and
private channels the bot is not in. `ack()` comes first, within Slack's 3 seconds.
Rights and validation live in `bot.admin.service` / `bot.admin.settings`; this package only routes.
"""

from __future__ import annotations

import logging
import shlex
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.admin import service as admin_mod
from bot.admin.service import NOT_ADMIN
from bot.deps import Deps
from bot.errors import CandorError
from handlers.commands import (
    admins,
    catchup,
    experts,
    images,
    knowledge,
    redact,
    settings,
    spend,
    tools,
)
from handlers.commands.base import Invocation, Registry, Subcommand

__all__ = ["PUBLIC", "REGISTRY", "USAGE", "Invocation", "register", "run"]

log = logging.getLogger(__name__)


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
        return USAGE
    name = call.args[0].lower()
    sub = REGISTRY.get(name)
    if sub is None:
        return f"I don't know `{call.args[0]}`.\n{USAGE}"
    if sub.admin_only and not await call.admin.is_admin(call.user_id, call.lookup):
        return NOT_ADMIN
    call.args = call.args[1:]
    try:
        return await sub.handler(call)
    except CandorError as exc:
        return exc.user_message
    except Exception:
        log.exception("/candor %s failed", name)
        return "Something went wrong on Candor's side; nothing was changed. Please try again."


async def cmd_help(_call: Invocation) -> str:
    return USAGE


REGISTRY = Registry(
    (Subcommand("help", ("help",), cmd_help, "this list", admin_only=False),),
    settings.SUBCOMMANDS,
    knowledge.SUBCOMMANDS,
    admins.SUBCOMMANDS,
    spend.SUBCOMMANDS,
    tools.SUBCOMMANDS,
    experts.SUBCOMMANDS,
    redact.SUBCOMMANDS,
    catchup.SUBCOMMANDS,
    images.SUBCOMMANDS,
)
#: Subcommands anyone may run; everything else is for admins.
PUBLIC = REGISTRY.public
#: What `/candor help` (and an unknown subcommand) answers, written from the registry.
USAGE = REGISTRY.usage()
