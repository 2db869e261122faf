"""Who may administer Candor, and the operations admins run. No Slack imports here.

An admin is a full member of the workspace Candor answers for (the event's or command's
team) who is a Slack workspace admin or owner (from `users.info`), or whose user ID is on
the allowlist: `CANDOR_ADMIN_USERS` in the environment plus the `admin_users` table that
`/candor admins add|remove` manages. Guests (restricted and ultra-restricted users) and
people of another team (a Slack Connect partner, `is_stranger`, another `team_id`) are
never admins, whatever their own workspace or the lists say: Slack's admin flags only
speak for the user's home team.

Slack is reached through a `UserLookup` the surface hands in (Bolt's `users.info`), so
this module stays importable without Slack. Lookups are cached for a few minutes per
process; DESIGN.md allows a short TTL cache of Slack user info, and a stale answer only
lasts `cache_ttl_seconds`.

Every change goes through `AdminService`, which writes the change and its audit row in
one transaction (see `bot.admin.settings` and `bot.admin.audit`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.admin import audit
from bot.admin.audit import AuditEntry
from bot.admin.settings import (
    Change,
    ConfigView,
    InvalidValue,
    Target,
    apply_change,
    config_view,
)
from bot.channels import FIELDS
from bot.clock import Clock
from bot.db import repo
from bot.db.admin_models import AdminUserRow
from bot.db.engine import Database
from bot.deps import Deps
from bot.settings import Settings

log = logging.getLogger(__name__)

#: `users.info`'s `user` object for an ID, or None when Slack could not say. The Slack
#: surface's lookup adds `HOME_TEAM_KEY`: the team Candor is installed in (`auth.test`).
UserLookup = Callable[[str], Awaitable[Mapping[str, Any] | None]]
HOME_TEAM_KEY = "candor_home_team_id"

NOT_ADMIN = (
    "Sorry, only Candor admins can do that: ask a Slack workspace admin or owner, "
    "or someone on Candor's admin list."
)
CACHE_TTL_SECONDS = 300.0


@dataclass(frozen=True)
class SlackUser:
    """The facts about a Slack user that decide admin rights."""

    user_id: str
    is_admin: bool = False
    is_owner: bool = False
    is_restricted: bool = False
    is_ultra_restricted: bool = False
    deleted: bool = False
    #: The user's home team, and (Enterprise Grid) every workspace of the org they are in.
    team_id: str = ""
    teams: tuple[str, ...] = ()
    #: Slack's flag for a user of another organization seen from this workspace.
    is_stranger: bool = False
    #: The team Candor is installed in, when the lookup said (`HOME_TEAM_KEY`).
    home_team_id: str = ""

    @classmethod
    def from_api(cls, user_id: str, data: Mapping[str, Any]) -> SlackUser:
        enterprise = data.get("enterprise_user")
        teams = enterprise.get("teams") if isinstance(enterprise, Mapping) else None
        return cls(
            user_id=user_id,
            is_admin=bool(data.get("is_admin") or data.get("is_primary_owner")),
            is_owner=bool(data.get("is_owner") or data.get("is_primary_owner")),
            is_restricted=bool(data.get("is_restricted")),
            is_ultra_restricted=bool(data.get("is_ultra_restricted")),
            deleted=bool(data.get("deleted")),
            team_id=str(data.get("team_id") or ""),
            teams=tuple(str(t) for t in teams) if isinstance(teams, list) else (),
            is_stranger=bool(data.get("is_stranger")),
            home_team_id=str(data.get(HOME_TEAM_KEY) or ""),
        )

    @property
    def is_guest(self) -> bool:
        return self.is_restricted or self.is_ultra_restricted

    def is_member_of(self, team_id: str) -> bool:
        """A full member of `team_id`: of that team, not a stranger, guest or deleted user.

        This is the one rule for who counts as "inside the workspace", for admin rights
        and for the knowledge a question may read.
        """
        if not team_id or self.is_stranger or self.is_guest or self.deleted:
            return False
        return self.team_id == team_id or team_id in self.teams

    def is_insider(self, team_id: str | None = None) -> bool:
        """A full member of `team_id` and of the team Candor is installed in, where known.

        With neither known there is nothing to check against, and the answer is no.
        """
        teams = {t for t in (team_id, self.home_team_id) if t}
        return bool(teams) and all(self.is_member_of(t) for t in teams)


@dataclass(frozen=True)
class AdminList:
    """Who is on the allowlist, by source (Slack admins are not listed here)."""

    from_environment: tuple[str, ...]
    from_database: tuple[str, ...]


class AdminService:
    """Admin checks and admin operations; built once per process (see `for_deps`)."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        clock: Clock,
        cache_ttl_seconds: float = CACHE_TTL_SECONDS,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.cache_ttl = timedelta(seconds=cache_ttl_seconds)
        self._users: dict[str, tuple[datetime, SlackUser]] = {}

    # --- who is an admin --------------------------------------------------------------

    async def slack_user(self, user_id: str, lookup: UserLookup) -> SlackUser | None:
        """The user's Slack facts, from the cache or `lookup`; None if Slack failed."""
        now = self.clock.now()
        cached = self._users.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            data = await lookup(user_id)
        except Exception:
            log.warning("Could not look up Slack user %s", user_id, exc_info=True)
            return None
        if data is None:
            return None
        user = SlackUser.from_api(user_id, data)
        self._users[user_id] = (now + self.cache_ttl, user)
        return user

    def forget(self, user_id: str) -> None:
        """Drop a cached lookup (after the allowlist changes, say)."""
        self._users.pop(user_id, None)

    async def is_admin(
        self, user_id: str, lookup: UserLookup, *, team_id: str | None = None
    ) -> bool:
        """Slack admin/owner or allowlisted, and a full member of the workspace: of
        `team_id` (the event's or command's team) and of the team the lookup names as
        Candor's own. Never a guest or a user of another team, whatever the lists say."""
        user = await self.slack_user(user_id, lookup)
        if user is None:
            # Without Slack's answer we cannot rule out a guest, so we refuse.
            return False
        if not user.is_insider(team_id):
            return False
        if user.is_admin or user.is_owner:
            return True
        if user_id in self.settings.candor.admin_user_list():
            return True
        async with self.db.sessions() as session:
            return await session.get(AdminUserRow, user_id) is not None

    # --- the allowlist ----------------------------------------------------------------

    async def list_admins(self) -> AdminList:
        async with self.db.sessions() as session:
            result = await session.execute(
                select(AdminUserRow.user_id).order_by(AdminUserRow.user_id)
            )
            stored = tuple(result.scalars().all())
        return AdminList(tuple(self.settings.candor.admin_user_list()), stored)

    async def add_admin(
        self, *, actor_id: str, workspace_id: str, user_id: str, lookup: UserLookup
    ) -> bool:
        """Allowlist `user_id`; False if already there. Guests and outsiders are refused."""
        user = await self.slack_user(user_id, lookup)
        if user is None:
            raise InvalidValue(f"I could not find <@{user_id}> in Slack, so nothing changed.")
        if user.is_guest:
            raise InvalidValue(f"<@{user_id}> is a guest; guests cannot be Candor admins.")
        if not user.is_insider(workspace_id):
            raise InvalidValue(
                f"<@{user_id}> is not a member of this workspace, so they cannot be a Candor admin."
            )
        async with self.db.write() as session:
            if await session.get(AdminUserRow, user_id) is not None:
                return False
            session.add(AdminUserRow(user_id=user_id, added_by=actor_id, added_at=self.clock.now()))
            await audit.record(
                session,
                workspace_id=workspace_id,
                actor_id=actor_id,
                action="admins add",
                target=user_id,
                before={"admin": False},
                after={"admin": True},
                when=self.clock.now(),
            )
        return True

    async def remove_admin(self, *, actor_id: str, workspace_id: str, user_id: str) -> bool:
        """Take `user_id` off the stored allowlist; False if they were not on it."""
        if user_id in self.settings.candor.admin_user_list():
            raise InvalidValue(
                f"<@{user_id}> is an admin through CANDOR_ADMIN_USERS; remove them there "
                "and restart Candor."
            )
        async with self.db.write() as session:
            row = await session.get(AdminUserRow, user_id)
            if row is None:
                return False
            await session.delete(row)
            await audit.record(
                session,
                workspace_id=workspace_id,
                actor_id=actor_id,
                action="admins remove",
                target=user_id,
                before={"admin": True},
                after={"admin": False},
                when=self.clock.now(),
            )
        self.forget(user_id)
        return True

    # --- settings -----------------------------------------------------------------------

    async def config(self, target: Target) -> ConfigView:
        async with self.db.sessions() as session:
            return await config_view(session, self.settings, target)

    async def set_values(
        self, *, actor_id: str, target: Target, action: str, values: Mapping[str, Any]
    ) -> Change:
        """Set fields of `target` (already parsed values); writes the audit row."""
        async with self.db.write() as session:
            return await apply_change(
                session,
                self.settings,
                target=target,
                values=dict(values),
                action=action,
                actor_id=actor_id,
                now=self.clock.now(),
            )

    async def reset(self, *, actor_id: str, target: Target, fields: Iterable[str]) -> Change:
        """Clear fields of `target` back to inherit (channel) or environment (default)."""
        names = [f for f in FIELDS if f in set(fields)]
        return await self.set_values(
            actor_id=actor_id,
            target=target,
            action="reset",
            values=dict.fromkeys(names),
        )

    async def overrides(self, workspace_id: str) -> list[ConfigView]:
        """Every channel of `workspace_id` with at least one override of its own."""
        async with self.db.sessions() as session:
            rows = await repo.list_channel_rows(session)
            views = []
            for row in rows:
                if row.workspace_id != workspace_id:
                    continue
                if all(getattr(row, name) is None for name in FIELDS):
                    continue
                target = Target(row.workspace_id, row.channel_id)
                views.append(await config_view(session, self.settings, target))
        return views

    # --- audit ------------------------------------------------------------------------

    async def audit_log(self, limit: int = audit.AUDIT_DEFAULT) -> list[AuditEntry]:
        async with self.db.sessions() as session:
            return await audit.latest(session, limit=limit)


def for_deps(deps: Deps) -> AdminService:
    """The process's one `AdminService`, kept in `deps.extras` so surfaces share its cache."""
    service = deps.extras.get("admin")
    if not isinstance(service, AdminService):
        service = AdminService(settings=deps.settings, db=deps.db, clock=deps.clock)
        deps.extras["admin"] = service
    return service
