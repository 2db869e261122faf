"""The admin surface inside Candor's real Slack app, served over HTTP on loopback.

`AdminHarness` sends *signed* slash commands, button clicks and modal submissions to the
app (real signature verification, Bolt's aiohttp adapter) and reads what the user saw:
the ephemeral reply posted to the command's `response_url` on the fake Slack server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from bot.deps import Deps
from handlers.app import EVENTS_PATH, SlackRuntime
from tests.fakes import slack_events as ev
from tests.fakes.slack_server import FakeSlackServer

ADMIN = "UADMIN0001"
OWNER = "UOWNER0001"
MEMBER = "UMEMBER001"
GUEST = "UGUEST0001"
TEAM = ev.TEAM_ID


@dataclass
class AdminHarness:
    """Talks to the Bolt app like Slack does; see the module docstring."""

    slack: FakeSlackServer
    sender: ev.SlackEventSender
    deps: Deps

    async def command(self, text: str, *, user: str = ADMIN, channel: str = "C1") -> str:
        """Run `/candor text` and return the ephemeral reply the user saw."""
        before = len(self.slack.calls_to("response_url"))
        form = ev.slash_command(
            "/candor",
            text,
            user_id=user,
            channel_id=channel,
            response_url=self.slack.response_url(),
            trigger_id=f"trigger-{before}",
        )
        status, _ = await self.sender.command(form)
        assert status == 200
        calls = await self.slack.wait_for("response_url", count=before + 1)
        reply = calls[before]
        assert reply.get("response_type") == "ephemeral"
        return str(reply.get("text"))

    async def click(self, action_id: str, value: str, *, user: str = ADMIN) -> None:
        payload = ev.block_actions(
            action_id, value, user_id=user, view={"id": "VHOME", "type": "home"}
        )
        status, _ = await self.sender.action(payload)
        assert status == 200

    async def submit(
        self, callback_id: str, values: dict[str, Any], *, metadata: str, user: str = ADMIN
    ) -> dict[str, Any]:
        """Submit a modal; returns the JSON Bolt answered with (errors), or {}."""
        payload = ev.view_submission(callback_id, values, user_id=user, private_metadata=metadata)
        status, body = await self.sender.action(payload)
        assert status == 200
        return json.loads(body) if body.strip() else {}

    async def open_home(self, user: str) -> dict[str, Any]:
        before = len(self.slack.calls_to("views.publish"))
        event = {"type": "app_home_opened", "user": user, "channel": "D1", "tab": "home"}
        status, _ = await self.sender.event(event)
        assert status == 200
        calls = await self.slack.wait_for("views.publish", count=before + 1)
        view = calls[before].get("view")
        return json.loads(view) if isinstance(view, str) else dict(view)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackServer]:
    async with FakeSlackServer() as server:
        server.set_user(ADMIN, is_admin=True)
        server.set_user(OWNER, is_owner=True)
        server.set_user(MEMBER)
        server.set_user(GUEST, is_admin=True, is_restricted=True)
        yield server


@pytest.fixture
async def harness(deps: Deps, slack: FakeSlackServer) -> AsyncIterator[AdminHarness]:
    """Candor's production Slack wiring (`SlackRuntime.build`) served over HTTP on port 0."""
    deps.settings.slack.bot_token = SecretStr("xoxb-test-token")
    deps.settings.slack.signing_secret = SecretStr(ev.SIGNING_SECRET)
    deps.settings.slack.api_url = slack.url
    runtime = SlackRuntime.build(deps)
    port = await runtime.start_http(0, host="127.0.0.1")
    sender = ev.SlackEventSender(f"http://127.0.0.1:{port}{EVENTS_PATH}")
    yield AdminHarness(slack=slack, sender=sender, deps=deps)
    await runtime.shutdown(grace_seconds=5)
