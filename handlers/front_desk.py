"""The front desk: Slack's requests are taken, and events acked, on a thread of their own.

Slack wants its ack within 3 seconds and we promise 100 ms; the answers in flight keep the
main event loop busy (one loop turn can take tens of milliseconds with 200 of them), so an
ack waiting in that loop waits behind them. The front desk runs its own event loop on its
own thread: the Socket Mode WebSocket and the HTTP listener live there, and an event
(`events_api` envelope, `event_callback` POST) is acked there at once, before the main
loop sees it. The thread only waits for the GIL, which the main thread hands over every
few milliseconds, so an ack never waits for answer work.

Everything else runs on the main loop, as before: Bolt's dispatch of the acked event
(exactly-once is still the database claim's job), and the requests whose answer is the
ack's content (slash commands, buttons, views, URL verification, the probes), which the
desk forwards and waits for. An HTTP event is acked only when its signature is valid; an
unsigned or stale one goes through Bolt, which refuses it as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)

T = TypeVar("T")


class FrontDesk:
    """An event loop on a daemon thread, and the two ways between it and the main loop."""

    def __init__(self, main: asyncio.AbstractEventLoop) -> None:
        self.main = main
        # A loop of the main loop's kind: uvloop's when `candor serve` runs on it.
        self.loop: asyncio.AbstractEventLoop = type(main)()
        self._thread = threading.Thread(target=self._run, name="candor-front-desk", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """From the main loop: run `work` on the desk's loop and wait for its result."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))

    async def on_main(self, work: Coroutine[Any, Any, T]) -> T:
        """From the desk: run `work` on the main loop and wait for its result."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.main))

    def hand_over(self, start: Callable[[], object]) -> None:
        """From the desk: call `start` on the main loop soon (it starts the work there)."""
        self.main.call_soon_threadsafe(start)

    async def close(self) -> None:
        """Stop the desk's loop (what runs on it must be closed first) and its thread."""
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join, 10)


def signed_event(
    verifier: SignatureVerifier | None, body: bytes, headers: Mapping[str, str]
) -> bool:
    """Whether an HTTP request is a validly signed Events API delivery (ack it at once)."""
    if verifier is None or not body.startswith(b"{"):
        return False
    try:
        valid = verifier.is_valid(
            body=body.decode("utf-8"),
            timestamp=headers.get("X-Slack-Request-Timestamp", ""),
            signature=headers.get("X-Slack-Signature", ""),
        )
    except (UnicodeDecodeError, ValueError):
        return False
    if not valid:
        return False
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("type") == "event_callback"
