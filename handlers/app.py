"""Wiring the Slack surface: Web API client, Bolt app, and the two transports.

`SlackRuntime.build(deps)` makes the `AsyncWebClient` (pointed at `SLACK_API_URL`, with
Slack's `ratelimited` answers retried after `Retry-After`, every call of the process over
one shared aiohttp session and its kept-alive connections), the Bolt `AsyncApp` with every
handler registered, and the `SlackSurface` the handlers share. Then either:

- `start_socket()`: Socket Mode over aiohttp (no public URL; the laptop default), or
- `start_http(port)`: an aiohttp server with `POST /slack/events` (Events API, slash
  commands and interactivity all arrive here, signed), `GET /healthz` (liveness),
  `GET /readyz` (database reachable and migrated, knowledge store reachable) and
  `GET /metrics` (Prometheus).

In Socket Mode, `start_health(port)` serves the same three GET routes on
`CANDOR_HEALTH_PORT`, so a container health check and a Prometheus scrape work in both
modes. Both transports run on the front desk (`handlers.front_desk`): a thread with its own
event loop that acks events at once, so answers in flight never delay an ack, and hands
every request to Bolt on the main loop. Every Slack request is counted by type and its
ack time measured; the log lines of handling it carry its event, channel and user ids.

`shutdown(grace)` stops taking new events (the listening socket closes, the WebSocket
disconnects, and a request that still slips in gets 503 so Slack retries elsewhere), lets
answers in flight finish for `grace` seconds, and cuts off the rest with a visible note.
Tests build the runtime the same way and start HTTP on port 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps
from bot.jobs.digests import ADMIN_POSTER
from bot.observability.health import readiness
from bot.observability.logs import set_log_context
from bot.observability.metrics import CONTENT_TYPE, METRICS, Metrics
from bot.settings import Settings
from handlers import register_all
from handlers.directory import SlackDirectory
from handlers.front_desk import FrontDesk, signed_event
from handlers.slack_io import SlackSurface

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"

#: An aiohttp route handler.
_Handler = Callable[[web.Request], Coroutine[Any, Any, web.Response]]


#: Seconds one Web API call may take (slack_sdk's own default).
SLACK_TIMEOUT_SECONDS = 30
#: Connections kept to Slack's Web API; more calls at once wait for a free one.
SLACK_CONNECTIONS = 100


def slack_session() -> aiohttp.ClientSession:
    """The one HTTP session every Web API call of the process goes through.

    Without it slack_sdk opens a session, and so a TCP (and TLS) connection, per call:
    about a third of Candor's CPU per answer went into connecting. Must be created with
    the event loop running; `SlackRuntime.shutdown` closes it.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=SLACK_CONNECTIONS, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT_SECONDS),
    )


def build_client(
    settings: Settings, session: aiohttp.ClientSession | None = None
) -> AsyncWebClient:
    """The bot's Web API client; retries connection errors and Slack rate limits.

    Give it `session` (see `slack_session`) in a long-running process; without one each
    call opens its own connection, which is fine for a one-off CLI command.
    """
    token = settings.slack.bot_token.get_secret_value() if settings.slack.bot_token else None
    return AsyncWebClient(
        token=token,
        base_url=settings.slack.api_url,
        session=session,
        timeout=SLACK_TIMEOUT_SECONDS,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=2),
        ],
    )


def build_app(deps: Deps, client: AsyncWebClient) -> AsyncApp:
    """The Bolt app with every surface registered (events, actions, commands, home)."""
    secret = deps.settings.slack.signing_secret
    app = AsyncApp(
        client=client,
        signing_secret=secret.get_secret_value() if secret else "",
        process_before_response=False,
    )
    metrics: Metrics | None = deps.extras.get(METRICS)

    async def observe(body: dict[str, Any], next: Callable[[], Awaitable[Any]]) -> Any:
        kind, ids = _request_kind(body)
        if metrics is not None:
            metrics.event_received(kind)
        # Tasks the handlers start copy this context: their log lines carry the ids.
        set_log_context(**ids)
        return await next()

    app.middleware(observe)
    register_all(app, deps)
    return app


def _request_kind(body: dict[str, Any]) -> tuple[str, dict[str, str | None]]:
    """The request's type for metrics (`app_mention`, `block_actions`, `/candor`, ...) and
    its ids for logs."""
    event = body.get("event") if isinstance(body.get("event"), dict) else None
    if event is not None:
        channel = event.get("channel")
        ids = {
            "event_id": body.get("event_id"),
            "channel": channel if isinstance(channel, str) else None,
            "user": event.get("user") if isinstance(event.get("user"), str) else None,
        }
        return str(event.get("type") or "event"), ids
    if body.get("command"):
        ids = {"channel": body.get("channel_id"), "user": body.get("user_id")}
        return str(body["command"]), ids
    user = body.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    return str(body.get("type") or "unknown"), {"user": user_id}


def _instrument_answers(deps: Deps, metrics: Metrics) -> None:
    """Count answers, their latency, flags, refusals and errors, and answers in flight.

    The manager's `reply` is wrapped here (the composition of the Slack surface) rather
    than by calls inside the conversation path, which other work is changing; billed
    tokens and cost come from the spend ledger's `on_billed`.
    """
    from bot.errors import CandorError
    from bot.ports import OverBudget
    from bot.spend.guard import SpendLedger

    manager = deps.manager
    if getattr(manager, "_candor_metrics", False):
        return
    reply = manager.reply

    async def measured(*args: Any, **kwargs: Any) -> Any:
        metrics.answer_started()
        try:
            answer = await reply(*args, **kwargs)
        except OverBudget:
            metrics.answer_failed("over_budget")
            raise
        except CandorError as exc:
            metrics.answer_failed(type(exc).__name__)
            raise
        except BaseException as exc:
            metrics.answer_failed("cancelled" if not isinstance(exc, Exception) else "unexpected")
            raise
        timings = answer.timings or {}
        total = timings.get("total_ms")
        first = timings.get("first_token_ms")
        metrics.answer_done(
            model=answer.model,
            flagged=answer.flagged,
            total_seconds=total / 1000 if total is not None else None,
            first_token_seconds=first / 1000 if first is not None else None,
        )
        return answer

    setattr(manager, "reply", measured)  # noqa: B010 - an instance attribute, on purpose
    setattr(manager, "_candor_metrics", True)  # noqa: B010
    if isinstance(deps.spend, SpendLedger):

        def billed(model: str, usage: Any, cost: int) -> None:
            metrics.llm_usage(
                model=model,
                prompt_tokens=usage.prompt_tokens,
                cached_tokens=usage.cached_tokens,
                completion_tokens=usage.completion_tokens,
                cost_micro_usd=cost,
            )

        deps.spend.on_billed = billed


def _route_spend_alerts(deps: Deps, client: AsyncWebClient) -> None:
    """Budget alerts go to the review channel when one is set, else only to the log."""
    from bot.spend.guard import SpendLedger

    if not isinstance(deps.spend, SpendLedger):
        return

    async def post(text: str) -> None:
        channel = deps.settings.slack.review_channel  # read per alert: the log has it anyway
        if channel:
            await client.chat_postMessage(channel=channel, text=text)

    deps.spend.alert = post


class SlackAdminPoster:
    """`bot.jobs.digests.AdminPoster` on the bot's Web API client (digests, reports)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def post(self, *, channel: str, text: str) -> None:
        await self.client.chat_postMessage(channel=channel, text=text, unfurl_links=False)

    async def upload(
        self, *, channel: str, filename: str, content: bytes, title: str, comment: str
    ) -> None:
        await self.client.files_upload_v2(
            channel=channel,
            filename=filename,
            content=content,
            title=title,
            initial_comment=comment,
        )


def _attach_directory(deps: Deps, directory: SlackDirectory) -> None:
    """Knowledge retrieval asks Slack who may see which channel (through the directory the
    surface uses for names, so one cache serves both)."""
    from bot.kb import ScopedKnowledge

    if isinstance(deps.knowledge, ScopedKnowledge):
        deps.knowledge.directory = directory


@dataclass
class SlackRuntime:
    """The running Slack surface; see the module docstring."""

    deps: Deps
    client: AsyncWebClient
    app: AsyncApp
    surface: SlackSurface
    port: int | None = None
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None
    _health_runner: web.AppRunner | None = None
    health_port: int | None = None
    _socket: SocketModeClient | None = None
    #: The thread Slack's requests arrive on and events are acked on (see `front_desk`).
    _desk: FrontDesk | None = None
    _verifier: SignatureVerifier | None = None
    _stopped: bool = field(default=False)
    #: The Web API client's HTTP session, when `build` made it (closed on shutdown).
    _session: aiohttp.ClientSession | None = None

    @classmethod
    def build(cls, deps: Deps, client: AsyncWebClient | None = None) -> SlackRuntime:
        owned: aiohttp.ClientSession | None = None
        if client is None:
            owned = slack_session()
            client = build_client(deps.settings, owned)
        surface = SlackSurface(
            client,
            max_image_bytes=deps.settings.slack.max_image_bytes,
            directory=SlackDirectory(client),
        )
        deps.extras["slack"] = surface
        deps.extras["slack_client"] = client
        _route_spend_alerts(deps, client)
        _attach_directory(deps, surface.lookups)
        deps.extras[ADMIN_POSTER] = SlackAdminPoster(client)
        metrics = deps.extras.setdefault(METRICS, Metrics())
        _instrument_answers(deps, metrics)
        runtime = cls(deps=deps, client=client, app=build_app(deps, client), surface=surface)
        runtime._session = owned
        return runtime

    # --- HTTP ------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        """Slack's HTTP routes, served on the front desk (probes that read state go on to
        the main loop)."""
        web_app = web.Application()
        web_app.router.add_post(EVENTS_PATH, self._events)
        self._add_probes(web_app, on_desk=True)
        return web_app

    def _add_probes(self, web_app: web.Application, *, on_desk: bool) -> None:
        """/healthz, /readyz and /metrics; served `on_desk`, the two that read the main
        loop's state (database, metrics) are forwarded to it."""
        main = self._on_main if on_desk else _served_here
        web_app.router.add_get(HEALTH_PATH, self._health)
        web_app.router.add_get(READY_PATH, main(self._ready))
        web_app.router.add_get(METRICS_PATH, main(self._metrics))

    async def start_health(
        self, port: int, host: str = "0.0.0.0", *, reuse_port: bool = False
    ) -> int:
        """Socket Mode: serve /healthz, /readyz and /metrics on `port`; returns the port."""
        web_app = web.Application()
        self._add_probes(web_app, on_desk=False)
        self._health_runner = web.AppRunner(web_app, access_log=None)
        await self._health_runner.setup()
        site = web.TCPSite(self._health_runner, host, port, reuse_port=reuse_port or None)
        await site.start()
        self.health_port = int(self._health_runner.addresses[0][1])
        log.info("Health and metrics on http://%s:%d", host, self.health_port)
        return self.health_port

    async def start_http(
        self, port: int, host: str = "0.0.0.0", *, reuse_port: bool = False
    ) -> int:
        """Serve Slack's HTTP requests on `port` (0 picks one); returns the bound port.

        `reuse_port`: several worker processes listen on the same port (SO_REUSEPORT).
        """
        secret = self.deps.settings.slack.signing_secret
        self._verifier = SignatureVerifier(secret.get_secret_value()) if secret else None
        self.port = await self._front_desk().run(self._listen(port, host, reuse_port))
        log.info("Candor is listening for Slack on http://%s:%d%s", host, self.port, EVENTS_PATH)
        return self.port

    async def _listen(self, port: int, host: str, reuse_port: bool) -> int:
        """On the desk: start the HTTP listener."""
        self._runner = web.AppRunner(self.web_app(), access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port, reuse_port=reuse_port or None)
        await self._site.start()
        return int(self._runner.addresses[0][1])

    async def _events(self, request: web.Request) -> web.Response:
        """On the desk: ack a signed event at once, forward everything else and wait."""
        if not self.surface.accepting:
            return web.Response(status=503, text="Candor is restarting")
        started = time.perf_counter()
        body = await request.read()
        headers: dict[str, str | Sequence[str]] = {
            key: list(request.headers.getall(key)) for key in request.headers.keys()
        }
        query = request.query_string
        desk = self._front_desk()
        if signed_event(self._verifier, body, request.headers):
            desk.hand_over(lambda: self._dispatch_acked(self._dispatch(body, query, headers)))
            self._acked(started)
            return web.Response(status=200)
        bolt_response = await desk.on_main(self._dispatch(body, query, headers))
        self._acked(started)
        return await to_aiohttp_response(bolt_response)

    async def _dispatch(
        self, body: bytes, query: str, headers: dict[str, str | Sequence[str]]
    ) -> BoltResponse:
        """On the main loop: Bolt handles one HTTP request (verifying its signature)."""
        request = AsyncBoltRequest(
            body=body.decode("utf-8", "replace"), query=query, headers=headers
        )
        return await self.app.async_dispatch(request)

    def _dispatch_acked(self, work: Coroutine[Any, Any, Any]) -> None:
        """On the main loop: run the dispatch of an event the desk acked, tracked for
        shutdown like the answers it starts."""
        if self.surface.spawn(_quietly(work)) is None:
            work.close()
            log.warning("An acked event arrived while stopping; Slack will not send it again.")

    def _acked(self, started: float) -> None:
        metrics: Metrics | None = self.deps.extras.get(METRICS)
        if metrics is not None:
            metrics.acked(time.perf_counter() - started)

    def _on_main(self, handler: _Handler) -> _Handler:
        """A desk route whose work reads the main loop's state (database, metrics)."""

        async def forwarded(request: web.Request) -> web.Response:
            return await self._front_desk().on_main(handler(request))

        return forwarded

    def _front_desk(self) -> FrontDesk:
        if self._desk is None:
            self._desk = FrontDesk(asyncio.get_running_loop())
        return self._desk

    async def _ready(self, _request: web.Request) -> web.Response:
        if not self.surface.accepting:
            return web.json_response({"ok": False, "checks": {"slack": "stopping"}}, status=503)
        ready = await readiness(self.deps)
        return web.json_response(
            {"ok": ready.ok, "checks": ready.checks}, status=200 if ready.ok else 503
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        metrics: Metrics = self.deps.extras.setdefault(METRICS, Metrics())
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _health(self, _request: web.Request) -> web.Response:
        status = 200 if self.surface.accepting else 503
        return web.json_response(
            {"ok": status == 200, "in_flight": len(self.surface.tasks)}, status=status
        )

    # --- Socket Mode -----------------------------------------------------------------

    async def start_socket(self, app_token: str) -> None:
        """Connect to Slack over Socket Mode (returns once connected)."""
        await self._front_desk().run(self._connect(app_token))
        log.info("Candor is connected to Slack over Socket Mode")

    async def _connect(self, app_token: str) -> None:
        """On the desk: open the WebSocket (its own Web API client asks for the URL)."""
        self._socket = SocketModeClient(
            app_token=app_token, web_client=build_client(self.deps.settings), logger=log
        )
        self._socket.socket_mode_request_listeners.append(self._envelope)  # type: ignore[arg-type]
        await self._socket.connect()  # type: ignore[no-untyped-call]

    async def _envelope(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        """On the desk: ack an event at once; forward anything else and ack with its answer.

        While stopping, an event is not acked: Slack delivers it again to a running
        process.
        """
        started = time.perf_counter()
        if request.type == "events_api":
            if not self.surface.accepting:
                return
            # Handed over first, so whoever sees the ack finds the work already queued.
            self._front_desk().hand_over(
                lambda: self._dispatch_acked(run_async_bolt_app(self.app, request))
            )
            await client.send_socket_mode_response(
                SocketModeResponse(envelope_id=request.envelope_id)
            )
            self._acked(started)
            return
        response = await self._front_desk().on_main(run_async_bolt_app(self.app, request))
        await send_async_response(client, request, response, started)
        self._acked(started)

    # --- shutdown --------------------------------------------------------------------

    async def shutdown(self, grace_seconds: float = 20.0) -> None:
        """Stop accepting, drain answers for `grace_seconds`, cut off the rest, close."""
        if self._stopped:
            return
        self._stopped = True
        self.surface.accepting = False
        desk = self._desk
        if desk is not None and self._site is not None:
            await desk.run(self._site.stop())
        if desk is not None and self._socket is not None:
            await desk.run(self._socket.close())  # type: ignore[no-untyped-call]
        cut = await self.surface.drain(grace_seconds)
        if cut:
            log.warning("Cut off %d answers still running after %.0f s", cut, grace_seconds)
        if desk is not None and self._runner is not None:
            await desk.run(self._runner.cleanup())
        if self._health_runner is not None:
            await self._health_runner.cleanup()
        await self.surface.close()
        if self._session is not None:
            await self._session.close()
        if desk is not None:
            await desk.close()


def _served_here(handler: _Handler) -> _Handler:
    return handler


async def _quietly(work: Coroutine[Any, Any, Any]) -> None:
    """Await `work`, logging its failure (an acked event's dispatch has nobody to tell)."""
    try:
        await work
    except Exception:
        log.exception("Handling an acked Slack event failed")
