"""Candor's real Slack app over HTTP on loopback, with an admin, for the redaction tests.

Events and slash commands arrive signed, through Bolt's real request path (as in
`tests/handlers` and `tests/admin`); `Live.command` returns the ephemeral reply the admin saw.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bot.deps import Deps
from handlers.app import EVENTS_PATH, SlackRuntime
from tests.fakes import slack_events as ev
from tests.fakes.slack_server import FakeSlackServer
from tests.handlers.conftest import configure

ADMIN = "UADMIN0001"


@dataclass
class Live:
    runtime: SlackRuntime
    slack: FakeSlackServer
    send: ev.SlackEventSender

    async def idle(self) -> None:
        await self.runtime.surface.idle(timeout=10)

    async def command(self, text: str, *, user: str = ADMIN, channel: str = "C1") -> str:
        before = len(self.slack.calls_to("response_url"))
        form = ev.slash_command(
            "/candor",
            text,
            user_id=user,
            channel_id=channel,
            response_url=self.slack.response_url(),
        )
        status, _ = await self.send.command(form)
        assert status == 200
        calls = await self.slack.wait_for("response_url", count=before + 1)
        return str(calls[before].get("text"))


@pytest.fixture
async def live(deps: Deps) -> AsyncIterator[Live]:
    async with FakeSlackServer() as slack:
        slack.set_user(ADMIN, is_admin=True)
        configure(deps, slack)
        runtime = SlackRuntime.build(deps)
        port = await runtime.start_http(0, host="127.0.0.1")
        yield Live(runtime, slack, ev.SlackEventSender(f"http://127.0.0.1:{port}{EVENTS_PATH}"))
        await runtime.shutdown(grace_seconds=5)
