"""Tools on Slack: the read-only look-ups, the status line, and Approve / Deny buttons.

`register(app, deps)` attaches `SlackTools` to the conversation's `Toolbox`
(`bot.tools`), which then can:

- read the thread being answered and public user and channel facts (`SlackReader`; a
  private channel or DM is never described, only public information is);
- show what Candor is doing while tools run ("searching the knowledge base for …") as the
  assistant thread status (DMs and assistant threads; elsewhere the 👀 reaction stays);
- ask for approval of a call with side effects: a message in the thread shows the tool and
  its exact arguments with Approve / Deny buttons. Only the person who asked, or an admin,
  may decide; a timeout denies. The decision is kept in the database (`tool_approvals`),
  so any replica may receive the click. The message is updated with the outcome.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.admin import service as admin_mod
from bot.deps import Deps
from bot.tools.approvals import APPROVED, DENIED, Approvals
from bot.tools.base import PendingCall, ToolContext
from handlers import render
from handlers.directory import is_private_channel, user_lookup

log = logging.getLogger(__name__)

APPROVE_ACTION = "candor_tool_approve"
DENY_ACTION = "candor_tool_deny"
NOT_YOURS = "Only the person who asked, or a Candor admin, can approve or deny this tool call."
ALREADY = "This tool call was already decided (or timed out)."
#: Longest argument text shown in the approval message (Slack's section limit is 3,000).
MAX_ARGUMENTS_CHARS = 2500


class SlackTools:
    """`SlackReader`, `ApprovalGate` and the status line on the bot's Web API client."""

    def __init__(self, client: AsyncWebClient, approvals: Approvals) -> None:
        self.client = client
        self.approvals = approvals

    # --- SlackReader -----------------------------------------------------------------

    async def read_thread(
        self, channel_id: str, thread_ts: str, limit: int
    ) -> list[dict[str, str]]:
        response = await self.client.conversations_replies(
            channel=channel_id, ts=thread_ts, limit=limit
        )
        return [
            {"user": str(m.get("user") or m.get("bot_id") or "?"), "text": str(m.get("text") or "")}
            for m in response.get("messages") or []
        ][-limit:]

    async def lookup_user(self, user_id: str) -> dict[str, Any] | None:
        try:
            user = (await self.client.users_info(user=user_id)).get("user") or {}
        except SlackApiError:
            return None
        profile = user.get("profile") or {}
        # Public profile fields only: no e-mail, no phone.
        return {
            "id": user.get("id", user_id),
            "name": profile.get("display_name") or user.get("name"),
            "real_name": profile.get("real_name") or user.get("real_name"),
            "title": profile.get("title"),
            "time_zone": user.get("tz"),
            "is_bot": bool(user.get("is_bot")),
        }

    async def lookup_channel(self, channel_id: str) -> dict[str, Any] | None:
        try:
            channel = (await self.client.conversations_info(channel=channel_id)).get("channel")
        except SlackApiError:
            return None
        if not channel or is_private_channel(channel) or channel.get("is_mpim"):
            return None  # public information only
        return {
            "id": channel.get("id", channel_id),
            "name": f"#{channel.get('name')}",
            "topic": (channel.get("topic") or {}).get("value"),
            "purpose": (channel.get("purpose") or {}).get("value"),
            "members": channel.get("num_members"),
        }

    # --- status ------------------------------------------------------------------------

    async def status(self, ctx: ToolContext, text: str) -> None:
        try:
            await self.client.assistant_threads_setStatus(
                channel_id=ctx.channel_id, thread_ts=ctx.thread_ts, status=text[:100]
            )
        except SlackApiError:
            pass  # not an assistant thread: the working reaction stays instead

    # --- ApprovalGate ------------------------------------------------------------------

    async def ask(self, ctx: ToolContext, call: PendingCall, timeout_seconds: float) -> bool:
        approval_id = await self.approvals.create(
            workspace_id=ctx.workspace_id,
            channel_id=ctx.channel_id,
            thread_ts=ctx.thread_ts,
            user_id=ctx.user_id,
            tool=call.spec.label,
            arguments=call.arguments,
        )
        blocks = approval_blocks(ctx.user_id, call, approval_id)
        try:
            posted = await self.client.chat_postMessage(
                channel=ctx.channel_id,
                thread_ts=ctx.thread_ts,
                text=f"Candor wants to run {call.spec.label}; approve or deny.",
                blocks=blocks,
            )
        except SlackApiError as exc:
            log.warning("Could not ask for approval: %s", exc.response.get("error"))
            return False
        approved = await self.approvals.wait(approval_id, timeout_seconds)
        row = await self.approvals.get(approval_id)
        outcome = _outcome(
            row.status if row else "expired", row.decided_by if row else None, timeout_seconds
        )
        try:
            await self.client.chat_update(
                channel=ctx.channel_id,
                ts=str(posted.get("ts")),
                text=outcome,
                blocks=[*blocks[:-1], _context(outcome)],
            )
        except SlackApiError as exc:
            log.info("Could not update the approval message: %s", exc.response.get("error"))
        return approved


def approval_blocks(asker: str, call: PendingCall, approval_id: int) -> list[dict[str, Any]]:
    """The question with the tool, its exact arguments, and the two buttons."""
    arguments = call.arguments_json()
    if len(arguments) > MAX_ARGUMENTS_CHARS:
        arguments = arguments[:MAX_ARGUMENTS_CHARS] + "\n… (cut here; the call uses all of it)"
    arguments = render.defuse_pings(arguments.replace("```", "ˋˋˋ"))
    return [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": (
                    f"<@{asker}>, Candor wants to run `{call.spec.label}`, which may change "
                    f"things, with these arguments:\n```{arguments}```"
                ),
            },
        },
        {
            "type": "actions",
            "block_id": "candor_tool_approval",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "value": str(approval_id),
                },
                {
                    "type": "button",
                    "action_id": DENY_ACTION,
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Deny"},
                    "value": str(approval_id),
                },
            ],
        },
    ]


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _outcome(status: str, by: str | None, timeout_seconds: float) -> str:
    if status == APPROVED:
        return f"✅ Approved by <@{by}>."
    if status == DENIED:
        return f"🚫 Denied by <@{by}>; the tool was not run."
    return f"⌛ Nobody approved within {timeout_seconds:g} seconds; the tool was not run."


def register(app: AsyncApp, deps: Deps) -> None:
    """Attach Slack to the toolbox and listen for Approve / Deny."""
    client = deps.extras.get("slack_client")
    if not isinstance(client, AsyncWebClient):
        surface = deps.extras.get("slack")
        client = getattr(surface, "client", None)
    if not isinstance(client, AsyncWebClient):
        log.warning("No Slack client in deps.extras; tools cannot reach Slack.")
        return
    box = deps.manager.tools
    slack = SlackTools(client, box.approvals)
    box.attach(reader=slack, gate=slack, status=slack.status)
    admins = admin_mod.for_deps(deps)

    @app.action(re.compile(f"^({APPROVE_ACTION}|{DENY_ACTION})$"))
    async def on_decision(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
        raw = str(action.get("value") or "")
        user = str((body.get("user") or {}).get("id") or "")
        row = await box.approvals.get(int(raw)) if raw.isdigit() else None
        if row is None:
            await _say(respond, ALREADY)
            return
        if user != row.user_id and not await admins.is_admin(
            user, user_lookup(client), team_id=row.workspace_id
        ):
            await _say(respond, NOT_YOURS)
            return
        approve = action.get("action_id") == APPROVE_ACTION
        if await box.approvals.decide(row.id, approve=approve, user_id=user) is None:
            await _say(respond, ALREADY)


async def _say(respond: AsyncRespond, text: str) -> None:
    await respond(text=text, response_type="ephemeral", replace_original=False)
