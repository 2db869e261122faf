"""Fixtures for the Slack surface: the fake Slack, and Candor running over real HTTP.

`candor` builds the runtime exactly as `bot.cli.serve` does (`SlackRuntime.build(deps)`), with
the Web API client pointed at `FakeSlackServer` and the HTTP transport on port 0; events
are delivered signed by `SlackEventSender`, through Bolt's real request path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from bot.deps import Deps
from handlers.app import EVENTS_PATH, SlackRuntime
from tests.fakes.slack_events import SIGNING_SECRET, SlackEventSender
from tests.fakes.slack_server import FakeSlackServer


@dataclass
class Candor:
    runtime: SlackRuntime
    slack: FakeSlackServer
    send: SlackEventSender
    base_url: str

    async def idle(self) -> None:
        await self.runtime.surface.idle(timeout=10)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackServer]:
    async with FakeSlackServer() as server:
        yield server


def configure(deps: Deps, slack: FakeSlackServer) -> None:
    deps.settings.slack.bot_token = SecretStr("xoxb-test-token")
    deps.settings.slack.signing_secret = SecretStr(SIGNING_SECRET)
    deps.settings.slack.api_url = slack.url


@pytest.fixture
async def candor(deps: Deps, slack: FakeSlackServer) -> AsyncIterator[Candor]:
    configure(deps, slack)
    runtime = SlackRuntime.build(deps)
    # The indicator shows at once, so tests can see it; test_indicator.py covers the delay.
    runtime.surface.indicator_delay = 0
    port = await runtime.start_http(0, host="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    yield Candor(runtime, slack, SlackEventSender(base + EVENTS_PATH), base)
    await runtime.shutdown(grace_seconds=5)


@pytest.fixture
async def socket_runtime(deps: Deps, slack: FakeSlackServer) -> AsyncIterator[SlackRuntime]:
    """Candor over Socket Mode, connected to the fake Slack's WebSocket."""
    configure(deps, slack)
    runtime = SlackRuntime.build(deps)
    await runtime.start_socket("xapp-test-token")
    yield runtime
    await runtime.shutdown(grace_seconds=5)
