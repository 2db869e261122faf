"""`/candor config|system|temperature|model|max-tokens|strict|judge|flag-threshold|enable|disable|reset`.

Channel settings.

Values are validated by `bot.admin.settings` and written (with an audit row) by
`bot.admin.service`; this module only reads arguments and renders the result. It also handles the
system-message editor modal that `/candor system edit` opens.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import channels
from bot.admin import settings as validate
from bot.admin.service import NOT_ADMIN, AdminService
from bot.admin.settings import InvalidValue
from bot.channels import FIELDS
from handlers import admin_views as views
from handlers.commands.base import (
    Handler,
    Invocation,
    Subcommand,
    pop_target,
    set_values,
    setting_command,
)
from handlers.directory import user_lookup


def register_modal(app: AsyncApp, service: AdminService) -> None:
    """Save what an admin typed into the system-message editor."""

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

    app.view(views.SYSTEM_MODAL)(on_system_submit)


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
        return await set_values(call, target, "system set", {"system_message": value})
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


cmd_temperature = setting_command(
    "temperature",
    "temperature",
    "/candor temperature 0.7 [#channel]",
    lambda raw, _: validate.parse_temperature(raw),
)
cmd_model = setting_command("model", "model", "/candor model NAME [#channel]", validate.parse_model)
cmd_max_tokens = setting_command(
    "max-tokens",
    "max_answer_tokens",
    "/candor max-tokens N [#channel]",
    lambda raw, _: validate.parse_max_tokens(raw),
)


def _toggle(enabled: bool) -> Handler:
    async def cmd(call: Invocation) -> str:
        target = await pop_target(call)
        if call.args:
            raise InvalidValue(f"Usage: `/candor {'enable' if enabled else 'disable'} [#channel]`")
        return await set_values(
            call, target, "enable" if enabled else "disable", {"enabled": enabled}
        )

    return cmd


cmd_strict = setting_command(
    "strict",
    "strict",
    "/candor strict on|off [#channel]",
    lambda raw, _: validate.parse_strict(raw),
)
cmd_judge = setting_command(
    "judge", "judge_model", "/candor judge off|MODEL [#channel]", validate.parse_judge
)
cmd_flag_threshold = setting_command(
    "flag-threshold",
    "flag_threshold",
    "/candor flag-threshold X [#channel]",
    lambda raw, _: validate.parse_flag_threshold(raw),
)


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


SUBCOMMANDS = (
    Subcommand(
        "config",
        ("config show [#channel]",),
        cmd_config,
        "effective settings; _inherited_ values are marked",
    ),
    Subcommand(
        "system",
        ("system show|reset [#channel]", 'system set "text" [#channel]', "system edit [#channel]"),
        cmd_system,
        "the system message; `edit` opens an editor",
    ),
    Subcommand(
        "temperature",
        ("temperature 0.7 [#channel]",),
        cmd_temperature,
        f"randomness, {channels.TEMPERATURE_MIN:g}–{channels.TEMPERATURE_MAX:g}",
    ),
    Subcommand("model", ("model NAME [#channel]",), cmd_model, "the model that answers"),
    Subcommand(
        "max-tokens",
        ("max-tokens N [#channel]",),
        cmd_max_tokens,
        f"longest answer, {validate.MAX_TOKENS_MIN}–{validate.MAX_TOKENS_MAX}",
    ),
    Subcommand(
        "strict",
        ("strict on|off [#channel]",),
        cmd_strict,
        "answer only from sources: no source, no LLM call",
    ),
    Subcommand(
        "judge",
        ("judge off|MODEL [#channel]",),
        cmd_judge,
        "a cheap model checks each answer against its sources (billed)",
    ),
    Subcommand(
        "flag-threshold",
        ("flag-threshold X [#channel]",),
        cmd_flag_threshold,
        "answers under this confidence (0–1) are flagged",
    ),
    Subcommand("enable", ("enable [#channel]",), _toggle(True), "turn Candor on there"),
    Subcommand("disable", ("disable [#channel]",), _toggle(False), "turn Candor off there"),
    Subcommand(
        "reset",
        ("reset [#channel] FIELD|all",),
        cmd_reset,
        "back to inherit (fields: " + ", ".join(validate.FIELD_LABELS[f] for f in FIELDS) + ")",
    ),
)
