"""Admin rights belong to members of the workspace Candor is installed in (issue 9, 2.9).

Slack's `is_admin` / `is_owner` flags speak for the user's own team: a Slack Connect
partner who administers their company's workspace is no admin here, nor is a stranger,
even when someone put their ID in `CANDOR_ADMIN_USERS` or the admin list. Commands go
through the real Bolt app (signed slash commands against the fake Slack server).
"""

from __future__ import annotations

from bot.admin.service import NOT_ADMIN
from bot.db import repo
from bot.deps import Deps
from tests.admin.conftest import ADMIN, AdminHarness

PARTNER_ADMIN = "UPARTNER01"
LISTED_PARTNER = "UPARTNER02"
STRANGER = "USTRANGER1"


async def test_a_user_of_another_team_is_refused_admin_commands(
    harness: AdminHarness, deps: Deps
) -> None:
    harness.slack.set_user(PARTNER_ADMIN, is_admin=True, is_owner=True, team_id="T9PARTNER")
    harness.slack.set_user(LISTED_PARTNER, team_id="T9PARTNER")
    harness.slack.set_user(STRANGER, is_admin=True, is_stranger=True)
    deps.settings.candor.admin_users = f"{LISTED_PARTNER},{STRANGER}"

    for user in (PARTNER_ADMIN, LISTED_PARTNER, STRANGER):
        assert await harness.command("kb scopes workspace", user=user) == NOT_ADMIN, user
        assert await harness.command("admins", user=user) == NOT_ADMIN, user

    # Nothing changed: no channel row was written, and the audit log names none of them.
    async with deps.db.sessions() as session:
        row = await repo.get_channel_row(session, workspace_id="T1", channel_id="C1")
    assert row is None or row.kb_scopes is None
    audit = await harness.command("audit")
    assert all(user not in audit for user in (PARTNER_ADMIN, LISTED_PARTNER, STRANGER))
    # The workspace's own admin is still an admin.
    assert await harness.command("admins", user=ADMIN) != NOT_ADMIN


async def test_a_user_of_another_team_cannot_be_added_as_admin(harness: AdminHarness) -> None:
    harness.slack.set_user(PARTNER_ADMIN, is_admin=True, team_id="T9PARTNER")

    reply = await harness.command(f"admins add <@{PARTNER_ADMIN}>")

    assert "not a member of this workspace" in reply
    assert PARTNER_ADMIN not in await harness.command("admins")
    assert await harness.command("admins", user=PARTNER_ADMIN) == NOT_ADMIN
