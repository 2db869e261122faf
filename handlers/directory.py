"""Who may see which channel, as Slack says: the `bot.kb.Directory` for retrieval.

Answers come from `conversations.info` (privacy, and whether the channel is shared with
another organization), `conversations.members`, `users.conversations` and `users.info`
(is the asker a full member of the workspace), cached for a short time (60 s by default)
so a burst of questions does not hammer Slack. A Slack error propagates, and retrieval
then falls back to the asking channel's own scope (nothing in a DM).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from weakref import WeakKeyDictionary

from slack_sdk.web.async_client import AsyncWebClient

from bot.admin.service import HOME_TEAM_KEY, SlackUser, UserLookup

CACHE_SECONDS = 60.0


def is_private_channel(channel: Mapping[str, Any]) -> bool:
    """Whether a `conversations.info` channel object is private (private, group or DM)."""
    return bool(channel.get("is_private") or channel.get("is_group") or channel.get("is_im"))


def is_externally_shared(channel: Mapping[str, Any]) -> bool:
    """Whether a `conversations.info` channel is shared with another organization.

    `is_ext_shared` (or a pending external share) is Slack Connect. `is_shared` without
    `is_org_shared` is a share that is not inside one Enterprise Grid org, so it counts
    as external too; an org-shared channel stays inside the organization.
    """
    if channel.get("is_ext_shared") or channel.get("is_pending_ext_shared"):
        return True
    return bool(channel.get("is_shared") and not channel.get("is_org_shared"))


#: `auth.test`'s team per client: it never changes for a token, so every replica agrees.
_home_teams: WeakKeyDictionary[AsyncWebClient, str] = WeakKeyDictionary()


async def home_team(client: AsyncWebClient) -> str:
    """The team Candor is installed in: `auth.test` for the bot token (asked once)."""
    team = _home_teams.get(client)
    if team is None:
        team = str((await client.auth_test()).get("team_id") or "")
        if team:
            _home_teams[client] = team
    return team


def user_lookup(client: AsyncWebClient) -> UserLookup:
    """`users.info` as the admin check wants it: the user object, or None.

    The object also names the team Candor is installed in (`HOME_TEAM_KEY`), so the check
    can refuse a user of another team whatever Slack's admin flags say about them there.
    """

    async def lookup(user_id: str) -> Mapping[str, Any] | None:
        user = (await client.users_info(user=user_id)).get("user")
        if not isinstance(user, dict):
            return None
        return {**user, HOME_TEAM_KEY: await home_team(client)}

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

    async def _channel(self, channel_id: str) -> Mapping[str, Any]:
        cached = self._get(("channel", channel_id))
        if cached is not None:
            return dict(cached)
        response = await self.client.conversations_info(channel=channel_id)
        channel = response.get("channel")
        return dict(self._put(("channel", channel_id), dict(channel or {})))

    async def is_private(self, channel_id: str) -> bool:
        return is_private_channel(await self._channel(channel_id))

    async def is_shared_externally(self, channel_id: str) -> bool:
        return is_externally_shared(await self._channel(channel_id))

    async def is_workspace_member(self, user_id: str, workspace_id: str) -> bool:
        """A full member of `workspace_id` and of Candor's own team (no guest or outsider)."""
        cached = self._get(("user", user_id))
        if cached is None:
            user = (await self.client.users_info(user=user_id)).get("user")
            facts = dict(user) if isinstance(user, dict) else {}
            facts[HOME_TEAM_KEY] = await home_team(self.client)
            cached = self._put(("user", user_id), facts)
        return SlackUser.from_api(user_id, cached).is_insider(workspace_id)

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
