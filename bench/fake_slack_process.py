"""The fake Slack in a process of its own, driving load into Candor for `bench_throughput`.

Runs `tests.fakes.slack_server.FakeSlackServer` (the Web API and the Socket Mode
WebSocket) plus a small control server, so its CPU is not charged to Candor. The driver
asks it for a run with `POST /run`; it then plays Slack delivering `app_mention` events,
keeping `in_flight` of them unanswered at any time until `total` were sent (or for
`duration` seconds), either signed over HTTP to Candor's `/slack/events` or as Socket Mode
envelopes spread over every connected WebSocket (Slack spreads them over the app's
connections). Everything is timed on this process's monotonic clock:

- ack: from the event on the wire (the HTTP request's body written, the envelope sent) to
  the HTTP 200 / the envelope's ack; also from the moment this fake chose to send it,
  which in the opening burst (N events at once) includes signing and sending the others
  first: about 65 ms for 200 on the 2-core machine;
- first text: from sending to the first answer text Slack holds in the thread;
- done: from sending to the answer's last words (`END_MARKER`) being in the thread.

    python bench/fake_slack_process.py      # prints "<api url> <control url>"
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp
from aiohttp import WSMsgType, web

from tests.fakes.slack_events import SIGNING_SECRET, app_mention, event_callback, sign
from tests.fakes.slack_server import FakeSlackServer

#: The fake LLM's answers end with this; an answer is done when Slack shows it.
END_MARKER = "END-OF-ANSWER"
CHANNELS = 10
USERS = 50


@dataclass
class Thread:
    sent: float
    wire: float | None = None
    ack: float | None = None
    first_text: float | None = None
    done: float | None = None
    messages: set[str] = field(default_factory=set)


class BenchSlack(FakeSlackServer):
    """The fake Slack, timing every answer of a run; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: dict[tuple[str, str], Thread] = {}
        self.envelopes: dict[str, tuple[str, str]] = {}
        self.completed = asyncio.Event()
        self.slack_errors: Counter[str] = Counter()
        self._on_done: asyncio.Queue[None] = asyncio.Queue()

    def _dispatch(self, method: str, body: dict[str, Any], headers: dict[str, str]) -> web.Response:
        response = super()._dispatch(method, body, headers)
        answer = json.loads(response.body) if isinstance(response.body, bytes) else {}
        if not answer.get("ok"):
            self.slack_errors[f"{method}:{answer.get('error')}"] += 1
            return response
        ts = answer.get("ts") or answer.get("message_ts") or body.get("ts")
        channel = str(body.get("channel") or answer.get("channel") or "")
        message = self._messages.get((channel, str(ts)))
        if message is None or not message.thread_ts:
            return response
        thread = self.threads.get((channel, message.thread_ts))
        if thread is None:
            return response
        now = time.monotonic()
        thread.messages.add(message.ts)
        if message.text.strip() and thread.first_text is None:
            thread.first_text = now
        if END_MARKER in message.text and thread.done is None:
            thread.done = now
            self._on_done.put_nowait(None)
        return response

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": len(self._sockets)})
        self._socket_connected.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                key = self.envelopes.pop(str(data.get("envelope_id")), None)
                if key is not None and key in self.threads:
                    self.threads[key].ack = time.monotonic()
        self._sockets.remove(ws)
        return ws

    # --- a run -----------------------------------------------------------------------

    async def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Deliver events as `spec` says, wait for every answer, return the timings."""
        in_flight = int(spec["in_flight"])
        total = int(spec.get("total") or in_flight)
        duration = float(spec.get("duration") or 0)
        transport = str(spec["transport"])
        url = str(spec.get("events_url") or "")
        retry_every = int(spec.get("retry_every") or 0)
        timeout = float(spec.get("timeout") or 120)
        run = uuid.uuid4().hex[:6]
        self.threads.clear()
        self.slack_errors.clear()
        self._on_done = asyncio.Queue()
        first_call = len(self.calls)
        tracing = aiohttp.TraceConfig()

        async def on_sent(_session: Any, ctx: Any, _params: Any) -> None:
            key = ctx.trace_request_ctx
            if key is not None and self.threads[key].wire is None:
                self.threads[key].wire = time.monotonic()

        tracing.on_request_chunk_sent.append(on_sent)
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=60),
            trace_configs=[tracing],
        )
        ack_failures = 0
        pending: set[asyncio.Task[None]] = set()
        counter = iter(range(10**9))
        rr = iter(range(10**9))

        async def deliver(body: dict[str, Any], key: tuple[str, str], retry: bool) -> None:
            nonlocal ack_failures
            if transport == "http":
                raw = json.dumps(body)
                headers = {"Content-Type": "application/json", **sign(raw, SIGNING_SECRET)}
                if retry:
                    headers["X-Slack-Retry-Num"] = "1"
                    headers["X-Slack-Retry-Reason"] = "http_timeout"
                try:
                    async with http.post(
                        url,
                        data=raw.encode(),
                        headers=headers,
                        trace_request_ctx=None if retry else key,
                    ) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if not ok:
                    ack_failures += 1
                elif not retry:
                    self.threads[key].ack = time.monotonic()
                return
            sockets = [ws for ws in self._sockets if not ws.closed]
            ws = sockets[next(rr) % len(sockets)]
            envelope = uuid.uuid4().hex
            if not retry:
                self.envelopes[envelope] = key
                self.threads[key].wire = time.monotonic()
            await ws.send_json(
                {
                    "envelope_id": envelope,
                    "type": "events_api",
                    "payload": body,
                    "accepts_response_payload": False,
                    "retry_attempt": 1 if retry else 0,
                    "retry_reason": "timeout" if retry else "",
                }
            )

        def send_one() -> None:
            i = next(counter)
            ts = f"{1_900_000_000 + i}.{run}"
            channel = f"C{i % CHANNELS}"
            event = app_mention(
                f"<@UBOT> question {i}: how do we rotate the on-call schedule?",
                user=f"U{i % USERS}",
                channel=channel,
                ts=ts,
            )
            body = event_callback(event, event_id=f"Ev{run}{i}")
            key = (channel, ts)
            self.threads[key] = Thread(sent=time.monotonic())
            task = asyncio.create_task(deliver(body, key, False))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if retry_every and i % retry_every == 0:
                # Slack's retry of the same event (same event_id): must stay unanswered.
                again = asyncio.create_task(deliver(body, key, True))
                pending.add(again)
                again.add_done_callback(pending.discard)

        started = time.monotonic()
        deadline = started + (duration or timeout)
        sent = 0
        for _ in range(in_flight):
            send_one()
            sent += 1
        done = 0
        samples: list[tuple[float, int]] = []
        while True:
            want = sent if duration else total
            if done >= want and (not duration or time.monotonic() >= deadline):
                break
            left = deadline - time.monotonic() + (timeout if duration else 0)
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self._on_done.get(), left)
            except TimeoutError:
                break
            done += 1
            if (duration and time.monotonic() < deadline) or (not duration and sent < total):
                send_one()
                sent += 1
            samples.append((time.monotonic() - started, done))
        wall = time.monotonic() - started
        await asyncio.sleep(1.0)  # let late duplicates show up
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await http.close()
        threads = list(self.threads.values())
        answered = [t for t in threads if t.done is not None]
        return {
            "sent": sent,
            "answered": len(answered),
            "wall_s": wall,
            # From the request on the wire (HTTP; a Socket Mode envelope as it is sent),
            # and from the moment this fake decided to send it: in a burst of N at once
            # its own signing and sending of the others comes first.
            "acks_ms": [(t.ack - (t.wire or t.sent)) * 1000 for t in threads if t.ack],
            "acks_from_send_ms": [(t.ack - t.sent) * 1000 for t in threads if t.ack],
            "ack_failures": ack_failures,
            "first_ms": [(t.first_text - t.sent) * 1000 for t in threads if t.first_text],
            "done_ms": [(t.done - t.sent) * 1000 for t in answered if t.done],
            "duplicates": sum(max(0, len(t.messages) - 1) for t in threads),
            "slack_errors": dict(self.slack_errors),
            "calls": dict(Counter(c.method for c in self.calls[first_call:])),
        }


async def serve() -> None:
    slack = await BenchSlack().start()

    async def run(request: web.Request) -> web.Response:
        return web.json_response(await slack.run(await request.json()))

    async def sockets(_request: web.Request) -> web.Response:
        return web.json_response({"sockets": len([s for s in slack._sockets if not s.closed])})

    app = web.Application()
    app.router.add_post("/run", run)
    app.router.add_get("/sockets", sockets)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(slack.url, f"http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve())
