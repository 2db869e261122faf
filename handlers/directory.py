"""Who may see which channel, as Slack says: the `bot.kb.Directory` for retrieval.

Answers come from `conversations.info` (privacy, and whether the channel is shared with
another organization), `conversations.members`, `users.conversations` and `users.info`
(is the asker a full member of the workspace), cached for a short time (60 s by default)
so a burst of questions does not hammer Slack, and dropped sooner when Slack's events say
a channel was renamed, someone joined or left it, or a user changed (`register`). The
same objects give the Slack surface its names and locales. A Slack error propagates, and
retrieval then falls back to the asking channel's own scope (nothing in a DM).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from weakref import WeakKeyDictionary

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.admin.service import HOME_TEAM_KEY, SlackUser, UserLookup

CACHE_SECONDS = 60.0
CACHE_MAX = 10_000


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
    """Channel privacy and membership, and user and channel objects, from the Slack Web
    API, briefly cached.

    One directory per process serves retrieval's scope checks and the names and locale in
    the prompt, so an answer asks Slack for a user or a channel at most once per `ttl`
    (`users.info` and `conversations.info` give both the facts and the names). Concurrent
    misses for one key share one request: a burst of 200 questions in one channel makes
    one `conversations.info` call, not 200. Slack's events drop what they change
    (`forget_channel`, `forget_user`, `forget_membership`; see `register`).
    """

    def __init__(self, client: AsyncWebClient, *, ttl: float = CACHE_SECONDS) -> None:
        self.client = client
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._pending: dict[tuple[str, str], asyncio.Future[Any]] = {}

    def _get(self, key: tuple[str, str]) -> Any:
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        return None

    def _put(self, key: tuple[str, str], value: Any) -> Any:
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()  # crude, but bounded; everything is cheap to ask again
        self._cache[key] = (time.monotonic(), value)
        return value

    async def _once(self, key: tuple[str, str], fetch: Callable[[], Awaitable[Any]]) -> Any:
        """The cached value of `key`, or one `fetch()` shared by every concurrent caller."""
        cached = self._get(key)
        if cached is not None:
            return cached
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = self._put(key, await fetch())
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._pending[key]

    def forget_channel(self, channel_id: str) -> None:
        """The channel changed (renamed, shared, made private): ask Slack again."""
        self._cache.pop(("channel", channel_id), None)

    def forget_user(self, user_id: str) -> None:
        """The user changed (name, locale, guest or admin flags): ask Slack again."""
        self._cache.pop(("user", user_id), None)

    def forget_membership(self, channel_id: str, user_id: str | None) -> None:
        """Someone joined or left `channel_id`: its members and their channels changed."""
        self._cache.pop(("members", channel_id), None)
        if user_id:
            self._cache.pop(("channels", user_id), None)

    async def channel(self, channel_id: str) -> Mapping[str, Any]:
        """`conversations.info`'s channel object (a copy)."""

        async def fetch() -> dict[str, Any]:
            response = await self.client.conversations_info(channel=channel_id)
            return dict(response.get("channel") or {})

        return dict(await self._once(("channel", channel_id), fetch))

    async def user(self, user_id: str) -> Mapping[str, Any]:
        """`users.info`'s user object with its locale, and Candor's own team as
        `HOME_TEAM_KEY` (a copy)."""

        async def fetch() -> dict[str, Any]:
            user = (await self.client.users_info(user=user_id, include_locale=True)).get("user")
            facts = dict(user) if isinstance(user, dict) else {}
            facts[HOME_TEAM_KEY] = await home_team(self.client)
            return facts

        return dict(await self._once(("user", user_id), fetch))

    async def _channel(self, channel_id: str) -> Mapping[str, Any]:
        return await self.channel(channel_id)

    async def is_private(self, channel_id: str) -> bool:
        return is_private_channel(await self._channel(channel_id))

    async def is_shared_externally(self, channel_id: str) -> bool:
        return is_externally_shared(await self._channel(channel_id))

    async def is_workspace_member(self, user_id: str, workspace_id: str) -> bool:
        """A full member of `workspace_id` and of Candor's own team (no guest or outsider)."""
        return SlackUser.from_api(user_id, await self.user(user_id)).is_insider(workspace_id)

    async def members(self, channel_id: str) -> frozenset[str]:
        async def fetch() -> frozenset[str]:
            members: set[str] = set()
            cursor = None
            while True:
                response = await self.client.conversations_members(
                    channel=channel_id, cursor=cursor, limit=1000
                )
                members.update(response.get("members") or [])
                cursor = (response.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return frozenset(members)

        return frozenset(await self._once(("members", channel_id), fetch))

    async def channels_of(self, user_id: str) -> frozenset[str]:
        async def fetch() -> frozenset[str]:
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
                    return frozenset(channels)

        return frozenset(await self._once(("channels", user_id), fetch))


#: The Slack events that change what the directory caches (the app manifest subscribes
#: to them).
INVALIDATING_EVENTS = (
    "channel_rename",
    "member_joined_channel",
    "member_left_channel",
    "user_change",
)


def register(app: AsyncApp, directory: SlackDirectory) -> None:
    """Drop cached channels, users and memberships when Slack says they changed."""

    async def changed(body: dict[str, Any]) -> None:
        event = body.get("event") or {}
        kind = event.get("type")
        if kind == "channel_rename":
            channel = event.get("channel") or {}
            if isinstance(channel, dict) and channel.get("id"):
                directory.forget_channel(str(channel["id"]))
        elif kind in ("member_joined_channel", "member_left_channel"):
            if event.get("channel"):
                user = event.get("user")
                directory.forget_membership(str(event["channel"]), str(user) if user else None)
        elif kind == "user_change":
            user = event.get("user") or {}
            if isinstance(user, dict) and user.get("id"):
                directory.forget_user(str(user["id"]))

    for kind in INVALIDATING_EVENTS:
        app.event(kind)(changed)
