"""Build Slack's inbound requests, signed like Slack signs them, and deliver them.

Slack signs every HTTP request with `X-Slack-Signature: v0=HMAC-SHA256(secret,
"v0:{timestamp}:{body}")` and `X-Slack-Request-Timestamp`; Bolt rejects anything else
with 401. These helpers build the three kinds of body Candor receives:

- Events API callbacks (JSON): `event_callback(app_mention(...))`, `message(...)`;
- slash commands (form-encoded): `slash_command("/candor", "help")`;
- interactivity (form-encoded `payload=` JSON): `block_actions(...)`, `view_submission(...)`,
  `message_action(...)` (message shortcuts), `shortcut(...)` (global shortcuts).

`SlackEventSender` POSTs them to a running app (HTTP mode) and returns status and body:

    sender = SlackEventSender(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET)
    status, body = await sender.event(app_mention("<@UBOT> hi"))
    status, body = await sender.command(slash_command("/candor", "help", response_url=...))
    status, body = await sender.action(block_actions("candor_feedback", "up"))

Defaults match `FakeSlackServer`: team `T1`, bot user `UBOT`, asking user `U1`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import aiohttp

SIGNING_SECRET = "test-signing-secret"
TEAM_ID = "T1"
APP_ID = "A1"
BOT_USER_ID = "UBOT"

_ts_counter = itertools.count(1)


def new_ts() -> str:
    """A fresh, unique Slack message timestamp."""
    return f"{1_800_000_000 + next(_ts_counter)}.000200"


def sign(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """The two signature headers Slack sends with `body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{ts}:{body}".encode()
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


# --- event payloads ---------------------------------------------------------------------


def app_mention(
    text: str = f"<@{BOT_USER_ID}> hello",
    *,
    user: str = "U1",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts or new_ts(),
        "channel": channel,
        "team": TEAM_ID,
        "event_ts": ts or new_ts(),
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    if files:
        event["files"] = files
    return event


def message(
    text: str = "hello",
    *,
    user: str | None = "U1",
    channel: str = "D1",
    channel_type: str = "im",
    ts: str | None = None,
    thread_ts: str | None = None,
    subtype: str | None = None,
    bot_id: str | None = None,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A `message` event; `channel_type` is im, channel, group or mpim."""
    stamp = ts or new_ts()
    event: dict[str, Any] = {
        "type": "message",
        "text": text,
        "ts": stamp,
        "event_ts": stamp,
        "channel": channel,
        "channel_type": channel_type,
        "team": TEAM_ID,
    }
    if user:
        event["user"] = user
    if thread_ts:
        event["thread_ts"] = thread_ts
    if subtype:
        event["subtype"] = subtype
    if bot_id:
        event["bot_id"] = bot_id
    if files:
        event["files"] = files
    return event


def event_callback(
    event: dict[str, Any], *, event_id: str | None = None, team_id: str = TEAM_ID
) -> dict[str, Any]:
    """Wrap an event as the Events API delivers it."""
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [
            {"team_id": team_id, "user_id": BOT_USER_ID, "is_bot": True, "enterprise_id": None}
        ],
        "is_ext_shared_channel": False,
    }


def url_verification(challenge: str = "challenge-token") -> dict[str, Any]:
    return {"token": "legacy", "challenge": challenge, "type": "url_verification"}


def slash_command(
    command: str = "/candor",
    text: str = "",
    *,
    user_id: str = "U1",
    channel_id: str = "C1",
    team_id: str = TEAM_ID,
    response_url: str = "https://hooks.slack.com/commands/T1/1/x",
    trigger_id: str = "trigger-1",
) -> dict[str, str]:
    """The form fields Slack posts for a slash command."""
    return {
        "token": "legacy",
        "team_id": team_id,
        "team_domain": "fake",
        "channel_id": channel_id,
        "channel_name": channel_id.lower(),
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def block_actions(
    action_id: str,
    value: str = "",
    *,
    block_id: str = "b1",
    user_id: str = "U1",
    channel_id: str = "C1",
    message_ts: str | None = None,
    response_url: str = "https://hooks.slack.com/actions/T1/1/x",
    trigger_id: str = "trigger-1",
    view: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `block_actions` payload for a button (in a message, or in `view` when given)."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "fake"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "legacy",
        "trigger_id": trigger_id,
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "action_ts": str(time.time()),
            }
        ],
    }
    if view is not None:
        payload["view"] = view
        payload["container"] = {"type": "view", "view_id": view.get("id", "V1")}
    else:
        ts = message_ts or new_ts()
        payload["channel"] = {"id": channel_id, "name": channel_id.lower()}
        payload["message"] = {"type": "message", "ts": ts, "text": "", "user": BOT_USER_ID}
        payload["container"] = {"type": "message", "message_ts": ts, "channel_id": channel_id}
    return payload


def view_submission(
    callback_id: str,
    values: dict[str, dict[str, dict[str, Any]]],
    *,
    user_id: str = "U1",
    private_metadata: str = "",
) -> dict[str, Any]:
    """A `view_submission` payload; `values` is block_id -> action_id -> element state."""
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "fake"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "legacy",
        "trigger_id": "trigger-1",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "state": {"values": values},
        },
    }


def message_action(
    callback_id: str,
    *,
    text: str = "a message",
    author: str = "U2",
    user_id: str = "U1",
    channel_id: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    response_url: str = "https://hooks.slack.com/actions/T1/1/x",
    trigger_id: str = "trigger-1",
) -> dict[str, Any]:
    """A message shortcut (`message_action`) used by `user_id` on a message by `author`."""
    stamp = ts or new_ts()
    message: dict[str, Any] = {"type": "message", "user": author, "text": text, "ts": stamp}
    if thread_ts:
        message["thread_ts"] = thread_ts
    return {
        "type": "message_action",
        "token": "legacy",
        "action_ts": str(time.time()),
        "team": {"id": TEAM_ID, "domain": "fake"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
        "channel": {"id": channel_id, "name": channel_id.lower()},
        "callback_id": callback_id,
        "trigger_id": trigger_id,
        "message_ts": stamp,
        "message": message,
        "response_url": response_url,
    }


def shortcut(
    callback_id: str, *, user_id: str = "U1", trigger_id: str = "trigger-1"
) -> dict[str, Any]:
    """A global shortcut (`shortcut`), from the composer or the search bar."""
    return {
        "type": "shortcut",
        "token": "legacy",
        "action_ts": str(time.time()),
        "team": {"id": TEAM_ID, "domain": "fake"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
        "callback_id": callback_id,
        "trigger_id": trigger_id,
    }


# --- delivery ---------------------------------------------------------------------------


class SlackEventSender:
    """POSTs signed requests to a running Candor HTTP app (`.../slack/events`)."""

    def __init__(self, url: str, signing_secret: str = SIGNING_SECRET) -> None:
        self.url = url
        self.signing_secret = signing_secret

    async def post(
        self,
        body: str,
        content_type: str,
        *,
        retry_num: int | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        """Sign and POST a raw body; returns (status, response text)."""
        sent = {
            "Content-Type": content_type,
            **sign(body, secret or self.signing_secret, timestamp),
        }
        if retry_num is not None:
            sent["X-Slack-Retry-Num"] = str(retry_num)
            sent["X-Slack-Retry-Reason"] = "http_timeout"
        sent.update(headers or {})
        async with aiohttp.ClientSession() as session:
            async with session.post(self.url, data=body.encode(), headers=sent) as response:
                return response.status, await response.text()

    async def event(self, event_or_body: dict[str, Any], **options: Any) -> tuple[int, str]:
        """Deliver an event; a bare event is wrapped with `event_callback` first."""
        body = event_or_body if "type" in event_or_body and "event" in event_or_body else None
        if body is None and event_or_body.get("type") == "url_verification":
            body = event_or_body
        if body is None:
            body = event_callback(event_or_body)
        return await self.post(json.dumps(body), "application/json", **options)

    async def command(self, form: dict[str, str], **options: Any) -> tuple[int, str]:
        return await self.post(urlencode(form), "application/x-www-form-urlencoded", **options)

    async def action(self, payload: dict[str, Any], **options: Any) -> tuple[int, str]:
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded", **options)
