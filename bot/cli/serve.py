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
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import time

from bot.db.engine import ensure_ready
from bot.deps import Deps, build_deps, open_checked_database
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


#: Slack spreads a Socket Mode app's events over at most this many connections.
MAX_SOCKET_CONNECTIONS = 10


def default_workers(settings: Settings, *, http: bool) -> int:
    """One worker per core, when the setup allows several (see `check_workers`)."""
    if not settings.qdrant.url:
        return 1  # the embedded vector store is one process's
    cores = os.cpu_count() or 1
    return cores if http else min(cores, MAX_SOCKET_CONNECTIONS)


def check_workers(settings: Settings, workers: int, *, http: bool) -> None:
    """Refuse a number of workers this setup cannot run (`ConfigError`, one sentence).

    Several workers share the database (the claim keeps answers exactly-once; SQLite in
    WAL mode takes several processes on one file), but Qdrant Edge, the embedded vector
    store, may be opened by one process only.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be 1 or more, not {workers}.")
    if workers == 1:
        return
    if not settings.qdrant.url:
        raise ConfigError(
            f"--workers {workers} needs QDRANT_URL: the embedded knowledge store can be "
            "opened by one process only; set QDRANT_URL to a Qdrant server or run one worker."
        )
    if not http and workers > MAX_SOCKET_CONNECTIONS:
        raise ConfigError(
            f"--workers {workers} is more Socket Mode connections than Slack allows "
            f"({MAX_SOCKET_CONNECTIONS}); use {MAX_SOCKET_CONNECTIONS} or fewer, or --http."
        )
    if http and not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError(
            "--workers above 1 with --http needs SO_REUSEPORT, which this system lacks; "
            "run one worker per port behind a load balancer instead."
        )


async def serve(
    settings: Settings,
    *,
    http: bool,
    port: int,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    stop: asyncio.Event | None = None,
    workers: int | None = None,
    worker: int | None = None,
    env_file: str | None = None,
) -> None:
    """Run the Slack app until SIGTERM/SIGINT (or until `stop` is set, for tests).

    `workers` > 1 runs that many worker processes (`supervise`); `worker` is set in each
    of them (its index: worker 0 runs the scheduled jobs; HTTP workers share the port).
    """
    from handlers.app import SlackRuntime

    started = time.perf_counter()
    _limit_malloc_arenas()
    names = required_secrets(settings, http=http)
    settings.require(*names)  # ConfigError: one sentence naming the missing secret
    check_replicas(settings)
    if worker is None:
        count = default_workers(settings, http=http) if workers is None else workers
        check_workers(settings, count, http=http)
        if count > 1:
            # Migrate (SQLite) or check the database once, before the workers race to.
            db = open_checked_database(settings)
            try:
                await ensure_ready(db, migrate=db.is_sqlite)
            finally:
                await db.dispose()
            await supervise(
                count,
                http=http,
                port=port,
                grace_seconds=grace_seconds,
                stop=stop,
                env_file=env_file,
            )
            return
    use_socket = not http
    deps = await build_deps(settings)
    # The tokenizer and the knowledge store load now, off the event loop, not on the
    # first message while every other conversation waits.
    await warm(deps)
    metrics = Metrics()
    deps.extras[METRICS] = metrics
    runtime = SlackRuntime.build(deps)
    runner = JobRunner(deps, observer=metrics.job_run)
    # With several workers, one runs the jobs (the database lease would allow any).
    jobs = settings.candor.jobs_enabled and not worker
    scheduler = build_scheduler(runner) if jobs else None
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
                await runtime.start_health(
                    settings.candor.health_port, reuse_port=worker is not None
                )
        else:
            await runtime.start_http(port, reuse_port=worker is not None)
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


async def warm(deps: Deps) -> None:
    """Open the knowledge store before taking events.

    The tokenizer is not loaded here: most answers never need it (`bot.tokens`), and one
    that does loads it off the event loop."""
    from bot.kb import ScopedKnowledge

    if isinstance(deps.knowledge, ScopedKnowledge):
        try:
            await deps.knowledge.kb.store.get_spec()
        except Exception:
            log.warning("The knowledge store did not open at startup; retrying on use.")
    _return_freed_memory()


#: glibc's `mallopt` parameter for the number of malloc arenas.
_M_ARENA_MAX = -8


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (as `MALLOC_ARENA_MAX=2` would), before threads start.

    glibc gives threads arenas of their own, up to 8 per core; the database driver's and
    `asyncio.to_thread`'s threads allocate little, yet each arena holds its freed memory.
    Two arenas cost no measurable CPU here and ~10 MiB less RSS under load. An explicit
    `MALLOC_ARENA_MAX` in the environment wins.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do


def _return_freed_memory() -> None:
    """Give the memory freed while loading back to the system (glibc keeps it otherwise),
    and freeze what is left: the imported modules, classes and settings live as long as
    the process, and the garbage collector no longer walks them on every full collection
    (measured: 1.3-2.9 ms of CPU less per answer in 4 back-to-back pairs of bench runs)."""
    gc.collect()
    gc.freeze()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do


async def supervise(
    workers: int,
    *,
    http: bool,
    port: int,
    grace_seconds: float,
    stop: asyncio.Event | None,
    env_file: str | None,
) -> None:
    """Run `workers` copies of `candor serve` and stop them together.

    Each is a process of its own (its own core): in Socket Mode each opens its own
    connection, and Slack spreads events over them; over HTTP all listen on `port` with
    SO_REUSEPORT and the kernel spreads connections. Exactly-once holds across them: the
    database claim decides which worker answers a message (and its retries). SIGTERM or
    SIGINT is passed on; if a worker exits, the others are stopped too, so the container
    or service manager restarts the whole set.
    """
    argv = [sys.executable, "-m", "bot.cli.main"]
    if env_file:
        argv += ["--env-file", env_file]
    argv += ["serve", "--port", str(port), "--workers", "1"]
    if http:
        argv.append("--http")
    children = [
        await asyncio.create_subprocess_exec(*argv, "--worker", str(i)) for i in range(workers)
    ]
    log.info("Started %d workers (pids %s)", workers, ", ".join(str(c.pid) for c in children))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):
            pass
    waits = [asyncio.ensure_future(c.wait()) for c in children]
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([stopping, *waits], return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            log.error("A worker exited; stopping the others.")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        for child in children:
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
        await asyncio.wait(waits, timeout=grace_seconds + 10)
        for child in children:
            if child.returncode is None:
                child.kill()
        await asyncio.gather(*waits, return_exceptions=True)
        stopping.cancel()
