"""Who may see which channel, as Slack says: the `bot.kb.Directory` for retrieval.

Answers come from `conversations.info`, `conversations.members` and
`users.conversations`, cached for a short time (60 s by default) so a burst of questions
does not hammer Slack. The cache only ever narrows what a user sees for that minute: it
never adds a channel Slack has not reported. A Slack error propagates, and retrieval then
falls back to the scopes that need no check.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.admin import UserLookup

CACHE_SECONDS = 60.0


def is_private_channel(channel: Mapping[str, Any]) -> bool:
    """Whether a `conversations.info` channel object is private (private, group or DM)."""
    return bool(channel.get("is_private") or channel.get("is_group") or channel.get("is_im"))


def user_lookup(client: AsyncWebClient) -> UserLookup:
    """`users.info` as the admin check wants it: the user object, or None."""

    async def lookup(user_id: str) -> Mapping[str, Any] | None:
        user = (await client.users_info(user=user_id)).get("user")
        return user if isinstance(user, dict) else None

    return lookup


class SlackDirectory:
    """Channel privacy and membership from the Slack Web API, briefly cached."""

    def __init__(self, client: AsyncWebClient, *, ttl: float = CACHE_SECONDS) -> None:
        self.client = client
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    def _get(self, key: tuple[str, str]) -> Any:
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        return None

    def _put(self, key: tuple[str, str], value: Any) -> Any:
        self._cache[key] = (time.monotonic(), value)
        return value

    async def is_private(self, channel_id: str) -> bool:
        cached = self._get(("private", channel_id))
        if cached is not None:
            return bool(cached)
        response = await self.client.conversations_info(channel=channel_id)
        channel = response.get("channel") or {}
        private = is_private_channel(channel)
        return bool(self._put(("private", channel_id), private))

    async def members(self, channel_id: str) -> frozenset[str]:
        cached = self._get(("members", channel_id))
        if cached is not None:
            return frozenset(cached)
        members: set[str] = set()
        cursor = None
        while True:
            response = await self.client.conversations_members(
                channel=channel_id, cursor=cursor, limit=1000
            )
            members.update(response.get("members") or [])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return frozenset(self._put(("members", channel_id), frozenset(members)))

    async def channels_of(self, user_id: str) -> frozenset[str]:
        cached = self._get(("channels", user_id))
        if cached is not None:
            return frozenset(cached)
        channels: set[str] = set()
        cursor = None
        while True:
            response = await self.client.users_conversations(
                user=user_id,
                types="public_channel,private_channel,mpim",
                exclude_archived=True,
                cursor=cursor,
                limit=1000,
            )
            channels.update(c["id"] for c in response.get("channels") or [])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return frozenset(self._put(("channels", user_id), frozenset(channels)))
