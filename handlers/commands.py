"""The `/candor` slash command: parse, check rights, call `bot.admin`, reply ephemerally.

Arguments are split like a shell (`shlex`), so long text goes in quotes. A channel is
named with Slack's escaped mention (`<#C123|name>`, sent when the command escapes
channels), a raw channel ID, or `#name` (looked up with `conversations.list`); no channel
means the current one, and `--workspace` or `default` means the workspace default.

Every reply goes through `respond` (the command's `response_url`), which works in DMs and
private channels the bot is not in. `ack()` comes first, within Slack's 3 seconds.
Rights and validation live in `bot.admin` / `bot.admin_settings`; this module only routes.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import admin as admin_mod
from bot import admin_settings as validate
from bot import admin_spend
from bot.admin import NOT_ADMIN, AdminService
from bot.admin_settings import InvalidValue, Target
from bot.audit import AUDIT_DEFAULT, AUDIT_MAX
from bot.channels import FIELDS
from bot.db.spend_models import DEFAULT_BUDGET_KEY
from bot.deps import Deps
from bot.errors import CandorError
from handlers import admin_views as views
from handlers.directory import user_lookup

log = logging.getLogger(__name__)

_CHANNEL_MENTION = re.compile(r"^<#([CGD][A-Z0-9]+)(?:\|[^>]*)?>$")
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{8,}$")
_CHANNEL_NAME = re.compile(r"^#([a-z0-9_\-]{1,80})$")
_USER_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_WORKSPACE_WORDS = ("--workspace", "default", "workspace-default")
#: conversations.list pages we read to find `#name` before asking for a mention instead.
_MAX_NAME_PAGES = 5

#: Subcommands anyone may run; everything else is for admins.
PUBLIC = frozenset({"help", "usage"})


@dataclass
class Invocation:
    """One `/candor` call: who, where, with which arguments, and how to reach Slack."""

    deps: Deps
    admin: AdminService
    client: AsyncWebClient
    team_id: str
    channel_id: str
    user_id: str
    trigger_id: str
    args: list[str]

    async def lookup(self, user_id: str) -> Mapping[str, Any] | None:
        return await user_lookup(self.client)(user_id)

    def here(self) -> Target:
        return Target(self.team_id, self.channel_id)


Handler = Callable[[Invocation], Awaitable[str]]


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

    async def on_system_submit(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        user_id = str(body.get("user", {}).get("id", ""))
        target, _origin = views.parse_metadata(str(view.get("private_metadata") or ""))

        if not await service.is_admin(user_id, user_lookup(client)):
            await ack(response_action="errors", errors={"system_message": NOT_ADMIN})
            return
        text = views.submitted_values(view).get("system_message") or ""
        try:
            value = validate.parse_system_message(text)
            await service.set_values(
                actor_id=user_id,
                target=target,
                action="system set",
                values={"system_message": value},
            )
        except InvalidValue as exc:
            await ack(response_action="errors", errors={"system_message": exc.user_message})
            return
        await ack()

    app.command("/candor")(on_command)
    app.view(views.SYSTEM_MODAL)(on_system_submit)


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


# --- targets --------------------------------------------------------------------------


async def pop_target(call: Invocation, *, skip: int = 0) -> Target:
    """Remove the channel or workspace argument from `call.args` and resolve it."""
    found: list[tuple[int, str]] = []
    for index, arg in enumerate(call.args):
        if index < skip:
            continue
        if (
            arg.lower() in _WORKSPACE_WORDS
            or _CHANNEL_MENTION.match(arg)
            or _CHANNEL_ID.match(arg)
            or _CHANNEL_NAME.match(arg)
        ):
            found.append((index, arg))
    if len(found) > 1:
        raise InvalidValue("Name one channel (or `--workspace`) per command.")
    if not found:
        return call.here()
    index, arg = found[0]
    del call.args[index]
    if arg.lower() in _WORKSPACE_WORDS:
        return Target.default(call.team_id)
    mention = _CHANNEL_MENTION.match(arg)
    if mention:
        return Target(call.team_id, mention.group(1))
    if _CHANNEL_ID.match(arg):
        return Target(call.team_id, arg)
    return Target(call.team_id, await _channel_by_name(call.client, arg[1:]))


async def _channel_by_name(client: AsyncWebClient, name: str) -> str:
    explain = (
        f"I could not find #{name}. Pick the channel from Slack's autocomplete so its link "
        "is sent, or give the channel ID (channel details → About, e.g. `C0123ABCD`)."
    )
    cursor = ""
    for _page in range(_MAX_NAME_PAGES):
        try:
            response = await client.conversations_list(
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=1000,
                cursor=cursor or None,
            )
        except SlackApiError:
            raise InvalidValue(explain) from None
        for channel in response.get("channels") or []:
            if channel.get("name") == name:
                return str(channel["id"])
        cursor = str((response.get("response_metadata") or {}).get("next_cursor") or "")
        if not cursor:
            break
    raise InvalidValue(explain)


def user_arg(raw: str) -> str:
    """A user ID from `<@U123|name>` or `U123`; `@name` cannot be resolved reliably."""
    mention = _USER_MENTION.match(raw)
    if mention:
        return mention.group(1)
    if _USER_ID.match(raw):
        return raw
    raise InvalidValue(
        f"`{raw}` is not a user I can identify: pick the person from Slack's @-autocomplete "
        "(so their link is sent) or give their member ID (`U0123ABCD`)."
    )


def _one_value(call: Invocation, usage: str) -> str:
    if len(call.args) != 1:
        raise InvalidValue(f"Usage: `{usage}`")
    return call.args[0]


# --- settings subcommands -----------------------------------------------------------------


async def _set(call: Invocation, target: Target, action: str, values: dict[str, Any]) -> str:
    change = await call.admin.set_values(
        actor_id=call.user_id, target=target, action=action, values=values
    )
    return views.render_change(change)


async def cmd_config(call: Invocation) -> str:
    if call.args and call.args[0].lower() == "show":
        call.args = call.args[1:]
    target = await pop_target(call)
    if call.args:
        raise InvalidValue("Usage: `/candor config show [#channel | --workspace]`")
    return views.render_config(await call.admin.config(target))


async def cmd_system(call: Invocation) -> str:
    action = call.args[0].lower() if call.args else "show"
    call.args = call.args[1:]
    if action == "set":
        if not call.args:
            raise InvalidValue('Usage: `/candor system set "Your text" [#channel]`')
        target = await pop_target(call, skip=1)
        if len(call.args) != 1:
            raise InvalidValue(
                'Put the text in quotes: `/candor system set "Your text" [#channel]`'
            )
        value = validate.parse_system_message(call.args[0])
        return await _set(call, target, "system set", {"system_message": value})
    target = await pop_target(call)
    if call.args:
        raise InvalidValue("Usage: `/candor system show|set|edit|reset [#channel]`")
    if action == "show":
        return views.render_system(await call.admin.config(target))
    if action == "reset":
        change = await call.admin.reset(
            actor_id=call.user_id, target=target, fields=["system_message"]
        )
        return views.render_change(change)
    if action == "edit":
        modal = views.system_modal(await call.admin.config(target), origin="command")
        await call.client.views_open(trigger_id=call.trigger_id, view=modal)
        return f"Opened the editor for the system message of {target.label}."
    raise InvalidValue("Usage: `/candor system show|set|edit|reset [#channel]`")


async def cmd_temperature(call: Invocation) -> str:
    target = await pop_target(call)
    value = validate.parse_temperature(_one_value(call, "/candor temperature 0.7 [#channel]"))
    return await _set(call, target, "temperature", {"temperature": value})


async def cmd_model(call: Invocation) -> str:
    target = await pop_target(call)
    raw = _one_value(call, "/candor model NAME [#channel]")
    value = validate.parse_model(raw, call.deps.settings)
    return await _set(call, target, "model", {"model": value})


async def cmd_max_tokens(call: Invocation) -> str:
    target = await pop_target(call)
    value = validate.parse_max_tokens(_one_value(call, "/candor max-tokens N [#channel]"))
    return await _set(call, target, "max-tokens", {"max_answer_tokens": value})


def _toggle(enabled: bool) -> Handler:
    async def cmd(call: Invocation) -> str:
        target = await pop_target(call)
        if call.args:
            raise InvalidValue(f"Usage: `/candor {'enable' if enabled else 'disable'} [#channel]`")
        return await _set(call, target, "enable" if enabled else "disable", {"enabled": enabled})

    return cmd


async def cmd_kb(call: Invocation) -> str:
    usage = (
        "Usage: `/candor kb scopes workspace,channel:C123 | kb top-k N | kb floor X [#channel]`, "
        "`/candor kb ingest [#channel]`, `/candor kb sources`, `/candor kb remove SOURCE`"
    )
    if not call.args:
        raise InvalidValue(usage)
    what = call.args[0].lower()
    call.args = call.args[1:]
    if what in ("ingest", "sources", "remove"):
        from handlers.kb_commands import kb_content

        return await kb_content(call, what)
    target = await pop_target(call)
    if what == "scopes":
        scopes = validate.parse_scopes(call.args)
        return await _set(call, target, "kb scopes", {"kb_scopes": scopes})
    if what in ("top-k", "topk", "top_k"):
        value = validate.parse_top_k(_one_value(call, "/candor kb top-k N [#channel]"))
        return await _set(call, target, "kb top-k", {"kb_top_k": value})
    if what == "floor":
        floor = validate.parse_score_floor(_one_value(call, "/candor kb floor X [#channel]"))
        return await _set(call, target, "kb floor", {"kb_score_floor": floor})
    raise InvalidValue(usage)


async def cmd_reset(call: Invocation) -> str:
    target = await pop_target(call)
    if not call.args:
        raise InvalidValue("Usage: `/candor reset [#channel] FIELD` (or `all`).")
    if [a.lower() for a in call.args] == ["all"]:
        fields: list[str] = list(FIELDS)
    else:
        fields = [validate.field_name(arg) for arg in call.args]
    change = await call.admin.reset(actor_id=call.user_id, target=target, fields=fields)
    return views.render_change(change)


# --- admins and audit ---------------------------------------------------------------------


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
            _one_value(call, "/candor audit [N]"), low=1, high=AUDIT_MAX, what="N"
        )
    return views.render_audit(await call.admin.audit_log(limit))


async def cmd_help(_call: Invocation) -> str:
    return views.USAGE


# --- spend --------------------------------------------------------------------------------


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


ROUTES: dict[str, Handler] = {
    "help": cmd_help,
    "config": cmd_config,
    "system": cmd_system,
    "temperature": cmd_temperature,
    "model": cmd_model,
    "max-tokens": cmd_max_tokens,
    "enable": _toggle(True),
    "disable": _toggle(False),
    "kb": cmd_kb,
    "reset": cmd_reset,
    "admins": cmd_admins,
    "audit": cmd_audit,
    "budget": cmd_budget,
    "prices": cmd_prices,
    "usage": cmd_usage,
}
