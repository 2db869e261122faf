"""`candor serve`: build everything and run the Slack app until SIGTERM.

The composition root for the Slack surface (with `bot.cli.main`, the only place in `bot/` that
imports `handlers/`): check the secrets the chosen transport needs, build `Deps`, build the
`SlackRuntime` (client, Bolt app, handlers), start Socket Mode or HTTP, and wait for
SIGTERM / SIGINT. Shutdown stops taking events, lets answers in flight finish for
`grace_seconds`, marks the rest as cut off in Slack, then closes the clients.

Transport choice: Socket Mode (the default; needs `SLACK_APP_TOKEN`) unless `--http` is
given, which serves the Events API on `--port` (and needs `SLACK_SIGNING_SECRET`). A missing
secret is a `ConfigError` naming it, before anything is built, and so is
`CANDOR_REPLICAS` > 1 on the embedded stores. HTTP mode serves `/healthz`, `/readyz` and
`/metrics` on `--port`; Socket Mode on `CANDOR_HEALTH_PORT` when it is set.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from bot.deps import build_deps
from bot.jobs.runner import JobRunner, build_scheduler
from bot.observability.metrics import METRICS, Metrics
from bot.settings import ConfigError, Settings

log = logging.getLogger(__name__)

#: Kubernetes sends SIGKILL 30 s after SIGTERM by default; leave room to close.
DEFAULT_GRACE_SECONDS = 20.0


def check_replicas(settings: Settings) -> None:
    """Refuse several replicas on the embedded stores (`ConfigError`, one sentence).

    With an empty `DATABASE_URL` or `QDRANT_URL`, each replica would keep its own SQLite file
    and vector store: answers twice, budgets per replica, jobs on every replica.
    """
    n = settings.candor.replicas
    if n <= 1:
        return
    if not settings.db.url or settings.database_url.startswith("sqlite"):
        raise ConfigError(
            f"CANDOR_REPLICAS is {n}, but DATABASE_URL is not a shared Postgres database: "
            "each replica would keep its own SQLite file; set DATABASE_URL or run one replica."
        )
    if not settings.qdrant.url:
        raise ConfigError(
            f"CANDOR_REPLICAS is {n}, but QDRANT_URL is empty: each replica would keep its "
            "own embedded vector store; set QDRANT_URL to a Qdrant server or run one replica."
        )


def required_secrets(settings: Settings, *, http: bool) -> tuple[str, ...]:
    """The secrets the chosen transport needs, in the order an operator should fix them."""
    if http:
        return ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
    return ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")


async def serve(
    settings: Settings,
    *,
    http: bool,
    port: int,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the Slack app until SIGTERM/SIGINT (or until `stop` is set, for tests)."""
    from handlers.app import SlackRuntime

    started = time.perf_counter()
    names = required_secrets(settings, http=http)
    settings.require(*names)  # ConfigError: one sentence naming the missing secret
    check_replicas(settings)
    use_socket = not http
    deps = await build_deps(settings)
    metrics = Metrics()
    deps.extras[METRICS] = metrics
    runtime = SlackRuntime.build(deps)
    runner = JobRunner(deps, observer=metrics.job_run)
    scheduler = build_scheduler(runner) if settings.candor.jobs_enabled else None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            pass
    try:
        if use_socket:
            assert settings.slack.app_token is not None
            await runtime.start_socket(settings.slack.app_token.get_secret_value())
            if settings.candor.health_port:
                await runtime.start_health(settings.candor.health_port)
        else:
            await runtime.start_http(port)
        if scheduler is not None:
            scheduler.start()
        log.info("Candor is ready in %.2f s", time.perf_counter() - started)
        await stop.wait()
        log.info("Stopping: finishing answers in flight (up to %.0f s)", grace_seconds)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
            try:
                await runner.release()  # the next replica takes the jobs over at once
            except Exception:
                log.warning("Could not hand the jobs lease over; it expires by itself.")
        await runtime.shutdown(grace_seconds)
        await deps.close()
