"""Acks come from the front desk's own thread: answer work never delays them."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request

from bot.observability.metrics import METRICS
from handlers.app import SlackRuntime
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention, event_callback, sign
from tests.fakes.slack_server import FakeSlackServer
from tests.handlers.conftest import Candor


def _post_signed(url: str, body: dict[str, object], secret: str | None = None) -> int:
    """POST a signed event from plain blocking code (this runs on a thread of its own)."""
    raw = json.dumps(body)
    headers = {"Content-Type": "application/json", **(sign(raw, secret) if secret else sign(raw))}
    request = urllib.request.Request(url, data=raw.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


async def test_an_event_is_acked_while_the_main_loop_is_busy(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("Answered after the busy spell.")
    mention = app_mention("<@UBOT> are you busy?")
    acked = threading.Event()
    statuses: list[int] = []

    def deliver() -> None:
        statuses.append(_post_signed(candor.send.url, event_callback(mention)))
        acked.set()

    sender = threading.Thread(target=deliver)
    sender.start()
    # The main loop is stuck in CPU work (as with 200 answers in flight): on the old
    # transport the ack waited for this loop, so this wait ran out.
    acked_while_busy = acked.wait(timeout=10)
    sender.join()

    assert acked_while_busy and statuses == [200]
    await candor.idle()
    [answer] = candor.slack.messages("C1")
    assert answer.text == "Answered after the busy spell."
    assert answer.thread_ts == mention["ts"]


async def test_an_unsigned_event_is_refused_and_never_handled(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    mention = app_mention("<@UBOT> forged")
    status = await asyncio.to_thread(
        _post_signed, candor.send.url, event_callback(mention), "not-the-secret"
    )
    await candor.idle()

    assert status == 401
    assert fake_llm.requests == []
    assert candor.slack.messages("C1") == []


async def test_a_socket_envelope_is_acked_before_bolt_has_handled_it(
    socket_runtime: SlackRuntime, slack: FakeSlackServer, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("Handled after the ack.")
    held = asyncio.Event()
    original = socket_runtime.app.async_dispatch

    async def slow_dispatch(request: object) -> object:
        await held.wait()  # Bolt's dispatch stalls, as a busy main loop would make it
        return await original(request)  # type: ignore[arg-type]

    socket_runtime.app.async_dispatch = slow_dispatch  # type: ignore[method-assign]
    mention = app_mention("<@UBOT> ack me first")

    envelope = await slack.send_socket_envelope("events_api", event_callback(mention))
    ack = await slack.wait_for_ack(envelope)
    assert ack["envelope_id"] == envelope
    assert slack.messages("C1") == []  # acked, not handled yet
    metrics = socket_runtime.deps.extras[METRICS]
    for _ in range(200):  # the desk records the ack just after sending it
        if b"candor_ack_seconds_count 1.0" in metrics.render():
            break
        await asyncio.sleep(0.01)
    assert b"candor_ack_seconds_count 1.0" in metrics.render()  # Socket Mode acks count too

    held.set()
    for _ in range(50):
        await asyncio.sleep(0.05)
        if slack.messages("C1") and not socket_runtime.surface.tasks:
            break
    await socket_runtime.surface.idle()
    [answer] = slack.messages("C1")
    assert answer.text == "Handled after the ack."
