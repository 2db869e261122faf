"""The app manifest and the `candor serve` entry point."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from bot.cli.manifest import BOT_EVENTS, BOT_SCOPES, render_manifest
from bot.cli.serve import serve
from bot.settings import ConfigError, Settings
from tests.fakes.slack_server import FakeSlackServer

ROOT = Path(__file__).resolve().parents[2]


def test_manifest_has_every_scope_event_and_the_command() -> None:
    text = render_manifest(http=False, url=None)
    for item in (*BOT_SCOPES, *BOT_EVENTS):
        assert f"      - {item}\n" in text
    assert "command: /candor" in text
    assert "socket_mode_enabled: true" in text
    assert "messages_tab_enabled: true" in text
    assert "request_url" not in text


def test_http_manifest_points_every_url_at_slack_events() -> None:
    text = render_manifest(http=True, url="https://candor.acme.test/")
    assert text.count("https://candor.acme.test/slack/events") == 3
    assert "socket_mode_enabled: false" in text


def test_checked_in_manifests_match_the_generator() -> None:
    assert (ROOT / "deploy/slack-manifest.yaml").read_text() == render_manifest(False, None)
    assert (ROOT / "deploy/slack-manifest-http.yaml").read_text() == render_manifest(True, None)


async def test_serve_without_secrets_is_one_sentence(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"^SLACK_BOT_TOKEN is not set"):
        await serve(settings, http=True, port=0)
    settings.slack.bot_token = SecretStr("xoxb-1")
    with pytest.raises(ConfigError, match=r"^SLACK_SIGNING_SECRET is not set"):
        await serve(settings, http=True, port=0)
    with pytest.raises(ConfigError, match=r"^SLACK_APP_TOKEN is not set"):
        await serve(settings, http=False, port=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_http_starts_fast_and_stops_cleanly(settings: Settings) -> None:
    async with FakeSlackServer() as slack:
        settings.slack.bot_token = SecretStr("xoxb-1")
        settings.slack.signing_secret = SecretStr("s")
        settings.slack.api_url = slack.url
        port = _free_port()
        stop = asyncio.Event()
        started = time.monotonic()
        task = asyncio.create_task(
            serve(settings, http=True, port=port, stop=stop, grace_seconds=1)
        )
        async with aiohttp.ClientSession() as session:
            while True:
                assert time.monotonic() - started < 3, "serve took 3 s or more to start"
                assert not task.done(), task
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                        assert r.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_serve_socket_mode_connects_then_stops_on_signal(settings: Settings) -> None:
    async with FakeSlackServer() as slack:
        settings.slack.bot_token = SecretStr("xoxb-1")
        settings.slack.app_token = SecretStr("xapp-1")
        settings.slack.api_url = slack.url
        stop = asyncio.Event()
        task = asyncio.create_task(serve(settings, http=False, port=0, stop=stop, grace_seconds=1))

        await slack.wait_for_socket(timeout=3)
        stop.set()
        await asyncio.wait_for(task, 5)

        assert slack.calls_to("apps.connections.open")
