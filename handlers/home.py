"""The App Home tab: what Candor is for everyone; settings and edit buttons for admins.

Everyone also gets the private "Ask Candor" box, "Catch me up" and their recent threads
(`handlers.home_daily`).

`app_home_opened` publishes the view (`views.publish`). An admin's "Edit" button
(`block_actions`) opens the settings modal for that channel or the workspace default;
submitting it (`view_submission`) saves the changed fields through `bot.admin.service`, which
writes the audit row, and republishes the tab. Rights are checked again on every click
and submission: a button is only a shortcut, not a permission.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.admin import service as admin_mod
from bot.admin import settings as validate
from bot.admin import spend as admin_spend
from bot.admin.service import NOT_ADMIN, AdminService
from bot.admin.settings import ConfigView, InvalidValue, Target
from bot.channels import FIELDS
from bot.deps import Deps
from handlers import admin_views as views
from handlers import home_daily
from handlers.directory import user_lookup

log = logging.getLogger(__name__)


async def publish_home(
    deps: Deps, service: AdminService, client: AsyncWebClient, *, user_id: str, team_id: str
) -> None:
    """Build and publish `user_id`'s App Home (the admin part only for admins)."""
    is_admin = await service.is_admin(user_id, user_lookup(client))
    defaults: ConfigView | None = None
    overrides: list[ConfigView] = []
    if is_admin:
        defaults = await service.config(Target.default(team_id))
        overrides = await service.overrides(team_id)
    spend_lines: list[str] = []
    try:
        usage = await admin_spend.for_deps(deps).user_usage(user_id)
        spend_lines = ["*Your spend*", usage.summary(you=True)]
    except Exception:
        # The home tab must open even if the spend tables are unreachable.
        log.exception("Could not load the spend of %s for the home tab", user_id)
    view = views.home_view(
        is_admin=is_admin, spend_lines=spend_lines, defaults=defaults, overrides=overrides
    )
    # The prompt box, catch-up and recent threads come after "How to use it".
    view["blocks"][3:3] = await home_daily.home_blocks(
        deps, client, team_id=team_id, user_id=user_id
    )
    await client.views_publish(user_id=user_id, view=view)


def changed_values(
    view: ConfigView, submitted: Mapping[str, str | None], deps: Deps
) -> dict[str, Any]:
    """The fields a settings modal changes, parsed; blank means inherit.

    Raises `InvalidValue` with the block it belongs to in `.field`.
    """
    values: dict[str, Any] = {}
    for field in FIELDS:
        if field not in submitted:
            continue
        raw = (submitted[field] or "").strip()
        new: Any
        if field == "enabled":
            new = None if raw in ("", "inherit") else raw == "on"
        elif not raw:
            new = None
        else:
            try:
                new = validate.parse_value(field, raw, deps.settings)
            except InvalidValue as exc:
                raise FieldError(field, exc.user_message) from None
        own = view.own(field)
        if isinstance(own, tuple):
            own = list(own)
        if new != own:
            values[field] = new
    return values


class FieldError(InvalidValue):
    """A bad value in one modal input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def register(app: AsyncApp, deps: Deps) -> None:
    """Register the App Home event, its edit buttons and the settings modal."""
    service = admin_mod.for_deps(deps)

    async def on_home_opened(
        event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        if event.get("tab", "home") != "home":
            return
        team_id = str(body.get("team_id") or event.get("view", {}).get("team_id") or "")
        await publish_home(deps, service, client, user_id=str(event["user"]), team_id=team_id)

    async def on_edit(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user_id = str(body["user"]["id"])
        team_id = str((body.get("team") or {}).get("id") or body["user"].get("team_id") or "")
        if not await service.is_admin(user_id, user_lookup(client)):
            log.info("Refused a settings edit by non-admin %s", user_id)
            await client.views_open(trigger_id=body["trigger_id"], view=_notice(NOT_ADMIN))
            return
        channel = str(body["actions"][0].get("value") or "*")
        target = Target.default(team_id) if channel == "*" else Target(team_id, channel)
        modal = views.settings_modal(
            await service.config(target),
            allowed_models=deps.settings.candor.allowed_model_list(),
            origin="home",
        )
        await client.views_open(trigger_id=body["trigger_id"], view=modal)

    async def on_settings_submit(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        user_id = str(body["user"]["id"])
        target, _origin = views.parse_metadata(str(view.get("private_metadata") or ""))
        if not await service.is_admin(user_id, user_lookup(client)):
            await ack(response_action="errors", errors={"system_message": NOT_ADMIN})
            return
        current = await service.config(target)
        try:
            values = changed_values(current, views.submitted_values(view), deps)
            if values:
                await service.set_values(
                    actor_id=user_id, target=target, action="settings edit", values=values
                )
        except FieldError as exc:
            await ack(response_action="errors", errors={exc.field: exc.user_message})
            return
        except InvalidValue as exc:
            # Cross-field refusals (temperature on a reasoning model) belong to temperature.
            await ack(response_action="errors", errors={"temperature": exc.user_message})
            return
        await ack()
        await publish_home(deps, service, client, user_id=user_id, team_id=target.workspace_id)

    home_daily.register(app, deps)
    app.event("app_home_opened")(on_home_opened)
    app.action(views.HOME_EDIT_ACTION)(on_edit)
    app.view(views.SETTINGS_MODAL)(on_settings_submit)


def _notice(text: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Candor"},
        "close": {"type": "plain_text", "text": "OK"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }
