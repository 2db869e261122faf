"""One user message Candor may answer, parsed from a Slack event.

`Incoming` sits below every handler that reads messages (`events`, `uploads`), so they
share it without importing each other. Parsing decides only *whether the event is a
person writing to Candor*; what to do with it is `events`' business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncBoltContext

from handlers.slack_io import strip_mention

#: Message subtypes that are still a person writing to Candor.
ANSWERABLE_SUBTYPES = (None, "file_share", "thread_broadcast")


@dataclass(frozen=True)
class Incoming:
    """A user message Candor may answer, parsed from an event."""

    kind: str  # "app_mention" | "message"
    event_id: str
    team_id: str
    channel: str
    user: str
    text: str
    ts: str
    thread_ts: str
    in_thread: bool
    is_dm: bool
    needs_known_thread: bool
    files: tuple[dict[str, Any], ...]
    bot_user_id: str | None
    bot_id: str | None

    @property
    def claim_key(self) -> str:
        return f"msg:{self.team_id}:{self.channel}:{self.ts}"

    @property
    def thread_key(self) -> str:
        return f"{self.team_id}:{self.channel}:{self.thread_ts}"


def parse(body: dict[str, Any], context: AsyncBoltContext) -> Incoming | None:
    """The `Incoming` for an event Candor should look at, or None to ignore it."""
    event = body.get("event") or {}
    kind = str(event.get("type") or "")
    bot_user_id = context.bot_user_id
    user = event.get("user")
    if (
        kind not in ("app_mention", "message")
        or event.get("subtype") not in ANSWERABLE_SUBTYPES
        or event.get("bot_id")
        or event.get("bot_profile")
        or not user
        or user == bot_user_id
    ):
        return None
    text = str(event.get("text") or "")
    channel_type = event.get("channel_type")
    is_dm = channel_type == "im"
    needs_known_thread = False
    if kind == "message" and not is_dm:
        if bot_user_id and f"<@{bot_user_id}>" in text:
            return None  # the app_mention copy of this message answers it
        if not event.get("thread_ts") or event.get("thread_ts") == event.get("ts"):
            return None  # channel chatter outside Candor's threads
        needs_known_thread = True
    ts = str(event.get("ts"))
    thread_ts = str(event.get("thread_ts") or ts)
    return Incoming(
        kind=kind,
        event_id=str(body.get("event_id") or ""),
        team_id=str(body.get("team_id") or event.get("team") or context.team_id or ""),
        channel=str(event.get("channel")),
        user=str(user),
        text=strip_mention(text, bot_user_id),
        ts=ts,
        thread_ts=thread_ts,
        in_thread=thread_ts != ts,
        is_dm=is_dm,
        needs_known_thread=needs_known_thread,
        files=tuple(event.get("files") or ()),
        bot_user_id=bot_user_id,
        bot_id=context.bot_id,
    )
