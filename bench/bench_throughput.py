"""Throughput of the real app: `candor serve` under load, fakes in their own processes.

Starts the fake OpenAI-compatible server (`fake_llm_process.py`: first token after 0.35 s,
then 640 characters streamed over 1 s) and the fake Slack (`fake_slack_process.py`) each in
a process of its own, then `candor serve` itself (Socket Mode, or `--http` on a free port)
on a fresh SQLite file or a fresh Postgres database. The fake Slack then delivers
`app_mention` events keeping N unanswered at any time (closed loop), every 10th also as
Slack's retry of the same event; after a short warm-up, it times every answer.

Printed per run: answers/s, ack p50/p99 from the request on the wire (and the p99 from
the fake's decision to send, which in the opening burst of N events at once includes its
own signing and sending of the others), first-text p50, overhead p50/p99 (answer time
minus the fake LLM's 1.35 s), Candor's CPU ms per answer (process CPU time of every
Candor process over the measured run / answers: robust to other load on the machine),
peak RSS per process, duplicates (answers posted twice) and errors (answers missing,
failed acks, Slack calls refused). The load average is printed with it: wall-clock
numbers depend on what else the machine runs.

    .venv/bin/python bench/bench_throughput.py                      # the whole table
    .venv/bin/python bench/bench_throughput.py --transport socket --db sqlite --n 200
    .venv/bin/python bench/bench_throughput.py --n 200 --duration 300   # memory over 5 min
    .venv/bin/python bench/bench_throughput.py --workers 2   # QDRANT_URL: a fake, empty one
    .venv/bin/python bench/bench_throughput.py --transport socket --db sqlite --n 200 \
        --profile /tmp/candor.txt        # py-spy's collapsed stacks (pip install py-spy)
    .venv/bin/python bench/bench_throughput.py --transport socket --db sqlite --n 200 \
        --cprofile /tmp/candor.pstats    # cProfile's stats (self time is exact under asyncio)

Postgres: `--pg postgresql+asyncpg://postgres@127.0.0.1:5432/postgres` (default; a fresh
database `candor_bench` is created in that server for each run). Run by hand; it prints
numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp
from aiohttp import web

from bench.fake_llm_process import FakeLLMProcess
from bench.fake_slack_process import END_MARKER
from tests.fakes.slack_events import SIGNING_SECRET

FIRST_TOKEN_S = 0.35
PIECES = 40
TRICKLE_S = 0.025
LLM_S = FIRST_TOKEN_S + PIECES * TRICKLE_S
ANSWER = (
    "Rotating the on-call schedule takes three steps: open the rota, swap the two weeks, "
    "and tell the people concerned in the channel so nobody misses a page. "
) * 5
ANSWER = ANSWER[: PIECES * 16 - len(END_MARKER) - 1] + " " + END_MARKER
CANDOR = str(Path(sys.executable).parent / "candor")
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "candor_bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (the `--workers` children)."""
    out = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            for child in children:
                out.extend(_tree(int(child)))
    except OSError:
        pass
    return out


def _cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def _fresh_postgres(url: str) -> str:
    import asyncpg

    plain = url.replace("+asyncpg", "")
    conn = await asyncpg.connect(plain)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {PG_BENCH_DB}")
    finally:
        await conn.close()
    return url.rsplit("/", 1)[0] + "/" + PG_BENCH_DB


async def fake_qdrant() -> tuple[web.AppRunner, str]:
    """A Qdrant server with no collection yet (an empty knowledge base), for `--workers`:
    several workers cannot share the embedded store, so they get a `QDRANT_URL`."""

    async def root(_request: web.Request) -> web.Response:
        return web.json_response({"title": "qdrant - fake", "version": "1.15.0"})

    async def exists(_request: web.Request) -> web.Response:
        return web.json_response({"result": {"exists": False}, "status": "ok", "time": 0})

    app = web.Application()
    app.router.add_get("/", root)
    app.router.add_get("/collections/{name}/exists", exists)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


class Candor:
    """`candor serve` in a process of its own."""

    def __init__(
        self, env: dict[str, str], args: list[str], cwd: str, cprofile: str | None = None
    ) -> None:
        self.env, self.args, self.cwd = env, args, cwd
        # Under cProfile, the stats of the whole process are written when it stops.
        self.prefix = [sys.executable, "-m", "cProfile", "-o", cprofile] if cprofile else []
        self.process: asyncio.subprocess.Process | None = None
        self.log = Path(cwd) / "candor.log"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.prefix,
            CANDOR,
            *self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=asyncio.subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def one_run(
    *,
    transport: str,
    db: str,
    n: int,
    total: int,
    duration: float,
    workers: int,
    pg_url: str,
    llm: FakeLLMProcess,
    slack_url: str,
    control: str,
    http: aiohttp.ClientSession,
    profile: str | None = None,
    cprofile: str | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "CANDOR_"))},
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_APP_TOKEN": "xapp-bench",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack_url,
            "OPENAI_BASE_URL": llm.url,
            "OPENAI_API_KEY": "bench",
            "CANDOR_DATA_DIR": tmp,
            "CANDOR_KB_EMBEDDER": "sparse",
            "DATABASE_URL": "",
        }
        qdrant = None
        if workers > 1:
            qdrant, env["QDRANT_URL"] = await fake_qdrant()
        if db == "postgres":
            env["DATABASE_URL"] = await _fresh_postgres(pg_url)
            upgrade = await asyncio.create_subprocess_exec(
                CANDOR, "db", "upgrade", cwd=tmp, env=env, stdout=asyncio.subprocess.DEVNULL
            )
            await upgrade.wait()
        args = ["serve"]
        port = _free_port()
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        if transport == "socket":
            health = _free_port()
            env["CANDOR_HEALTH_PORT"] = str(health)
            metrics_url = f"http://127.0.0.1:{health}/metrics"
        if transport == "http":
            args += ["--http", "--port", str(port)]
        args += ["--workers", str(workers)]
        candor = Candor(env, args, tmp, cprofile)
        await candor.start()
        events_url = f"http://127.0.0.1:{port}/slack/events"
        await _ready(candor, transport, workers, port, control, http)
        spec: dict[str, Any] = {
            "transport": transport,
            "events_url": events_url,
            "timeout": 180,
        }
        # Warm-up: the first answers of a process (imports, first connections) are not
        # what a long-running process costs per answer.
        await _post(http, control, {**spec, "in_flight": min(n, 10), "total": 10})
        pids = _tree(candor.pid)
        cpu_before = _cpu_seconds(pids)
        peak: dict[int, float] = {}
        timeline: list[tuple[float, float]] = []  # (seconds, largest RSS of a process)
        sampling = True

        async def sample() -> None:
            began = time.monotonic()
            while sampling:
                now = [_rss_mib(pid) for pid in _tree(candor.pid)]
                for pid, rss in zip(_tree(candor.pid), now, strict=False):
                    peak[pid] = max(peak.get(pid, 0.0), rss)
                timeline.append((time.monotonic() - began, max(now or [0.0])))
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        spy = None
        if profile:
            # Collapsed stacks of every Candor process over the measured run.
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "py-spy"),
                *("record", "--pid", str(candor.pid), "--format", "raw", "--nonblocking"),
                *("--subprocesses", "--rate", "250", "-o", profile),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await asyncio.sleep(1.0)
        load_before = os.getloadavg()[0]
        result = await _post(
            http,
            control,
            {
                **spec,
                "in_flight": n,
                "total": total,
                "duration": duration,
                "retry_every": 10,
            },
        )
        sampling = False
        await sampler
        if spy is not None:
            spy.send_signal(2)
            await spy.wait()
        cpu = _cpu_seconds(_tree(candor.pid)) - cpu_before
        if timeline:
            # Flat memory: the largest RSS of the first and of the last minute (or sixth).
            span = min(60.0, timeline[-1][0] / 6)
            end = timeline[-1][0]
            result["rss_first_mib"] = max(r for t, r in timeline if t <= span)
            result["rss_last_mib"] = max(r for t, r in timeline if t >= end - span)
        result["load"] = (load_before + os.getloadavg()[0]) / 2
        if workers == 1:
            result["server_acks"] = await _server_acks(http, metrics_url)
        await candor.stop()
        if qdrant is not None:
            await qdrant.cleanup()
        log_text = candor.log.read_text(errors="replace")
        result["log_errors"] = log_text.count(" ERROR ") + log_text.count("Traceback")
    answered = result["answered"]
    result.update(
        transport=transport,
        db=db,
        n=n,
        workers=workers,
        cpu_ms=cpu * 1000 / max(answered, 1),
        rss_mib=max(peak.values() or [0.0]),
    )
    return result


async def _ready(
    candor: Candor,
    transport: str,
    workers: int,
    port: int,
    control: str,
    http: aiohttp.ClientSession,
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert candor.process is not None
        if candor.process.returncode is not None:
            raise RuntimeError(f"candor exited: {candor.log.read_text()[-2000:]}")
        try:
            if transport == "http":
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            else:
                async with http.get(f"{control}/sockets") as r:
                    if (await r.json())["sockets"] >= max(workers, 1):
                        return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("candor did not get ready in 60 s")


async def _post(http: aiohttp.ClientSession, control: str, spec: dict[str, Any]) -> dict[str, Any]:
    async with http.post(f"{control}/run", json=spec) as r:
        result: dict[str, Any] = await r.json()
        return result


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


HEADER = (
    "| transport | db | in flight | workers | answers/s "
    "| ack p50 / p99 ms on the fake Slack's clock (p99 from its send) "
    "| acks within 100 ms (Candor) | first text p50 ms | overhead p50 / p99 ms | CPU ms/answer | peak RSS MiB | dup | errors | load |"
)


def _share(acks: dict[str, float]) -> str:
    share = acks.get("share_within_100ms")
    return "-" if share is None else f"{share * 100:.1f} %"


async def _server_acks(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """Candor's own ack histogram (arrival to ack sent): acks in all, and the share
    within 100 ms. The fake Slack's ack times add its own loop's delays on top."""
    try:
        async with http.get(url) as r:
            text = await r.text()
    except aiohttp.ClientError:
        return {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith('candor_ack_seconds_bucket{le="0.1"}'):
            values["within_100ms"] = float(line.split()[-1])
        elif line.startswith("candor_ack_seconds_count"):
            values["count"] = float(line.split()[-1])
    if values.get("count"):
        values["share_within_100ms"] = values.get("within_100ms", 0.0) / values["count"]
    return values


def row(r: dict[str, Any]) -> str:
    overhead = [d - LLM_S * 1000 for d in r["done_ms"]]
    errors = (
        (r["sent"] - r["answered"])
        + r["ack_failures"]
        + sum(v for k, v in r["slack_errors"].items() if "ratelimited" not in k)
    )
    return (
        f"| {r['transport']} | {r['db']} | {r['n']} | {r['workers']} "
        f"| {r['answered'] / r['wall_s']:.1f} "
        f"| {_pct(r['acks_ms'], 0.5):.0f} / {_pct(r['acks_ms'], 0.99):.0f}"
        f" ({_pct(r['acks_from_send_ms'], 0.99):.0f}) "
        f"| {_share(r.get('server_acks', {}))} "
        f"| {_pct(r['first_ms'], 0.5):.0f} "
        f"| {_pct(overhead, 0.5):.0f} / {_pct(overhead, 0.99):.0f} "
        f"| {r['cpu_ms']:.1f} | {r['rss_mib']:.0f} | {r['duplicates']} | {errors} "
        f"| {r['load']:.1f} |"
    )


async def main(args: argparse.Namespace) -> None:
    transports = [args.transport] if args.transport else ["socket", "http"]
    dbs = [args.db] if args.db else ["sqlite", "postgres"]
    sizes = [args.n] if args.n else [20, 200]
    print(
        f"fake LLM: first token {FIRST_TOKEN_S} s, then {len(ANSWER)} chars over "
        f"{PIECES * TRICKLE_S:.2f} s ({LLM_S:.2f} s per answer); {os.cpu_count()} cores"
    )
    print(HEADER)
    print("|" + "---|" * (HEADER.count(" | ") + 1))
    async with FakeLLMProcess(FIRST_TOKEN_S, trickle=TRICKLE_S, text=ANSWER) as llm:
        slack = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "bench" / "fake_slack_process.py"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert slack.stdout is not None
        slack_url, control = (await slack.stdout.readline()).decode().split()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as http:
                for db in dbs:
                    for transport in transports:
                        for n in sizes:
                            result = await one_run(
                                transport=transport,
                                db=db,
                                n=n,
                                total=args.total or max(3 * n, 300),
                                duration=args.duration,
                                workers=args.workers,
                                pg_url=args.pg,
                                llm=llm,
                                slack_url=slack_url,
                                control=control,
                                http=http,
                                profile=args.profile,
                                cprofile=args.cprofile,
                            )
                            print(row(result), flush=True)
                            if args.verbose:
                                keys = ("slack_errors", "log_errors", "calls", "server_acks")
                                keys += ("rss_first_mib", "rss_last_mib")
                                extra = {k: result.get(k) for k in keys}
                                print("   ", json.dumps(extra))
        finally:
            slack.terminate()
            await slack.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["socket", "http"])
    parser.add_argument("--db", choices=["sqlite", "postgres"])
    parser.add_argument("--n", type=int, help="answers in flight (default: 20, then 200)")
    parser.add_argument("--total", type=int, help="answers per run (default: 3 x n, at least 300)")
    parser.add_argument("--duration", type=float, default=0, help="run this many seconds")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pg", default=PG_DEFAULT)
    parser.add_argument("--profile", help="py-spy's collapsed stacks of the run to this file")
    parser.add_argument(
        "--cprofile", help="run candor under cProfile; its pstats to this file (one worker)"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    asyncio.run(main(parser.parse_args()))
