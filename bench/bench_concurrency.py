"""How many conversations one process holds in flight while the LLM thinks.

Runs N concurrent `ConversationManager.reply` calls (distinct users and threads, spend
ledger on) against the fake OpenAI-compatible server with a fixed latency, running in a
separate process so its CPU is not billed to Candor, on the embedded SQLite database (or
`DATABASE_URL`, migrated). Prints how many requests the LLM server saw at once, the wall
time, and per-reply latency percentiles. With perfect concurrency the wall time is one
LLM latency plus Candor's own CPU time per reply times N.

    .venv/bin/python bench/bench_concurrency.py --n 200 --latency 2.0

Run by hand; it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fake_llm_process import FakeLLMProcess
from bot.conversation import Turn
from bot.deps import build_deps
from bot.settings import load_settings


async def main(n: int, latency: float) -> None:
    async with FakeLLMProcess(latency) as llm:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.update(
                {
                    "OPENAI_BASE_URL": llm.url,
                    "OPENAI_API_KEY": "bench",
                    "CANDOR_DATA_DIR": tmp,
                    "CANDOR_BUDGET_DEFAULT_USD": "0",
                }
            )
            deps = await build_deps(load_settings(None))
            latencies: list[float] = []
            phases: dict[str, list[float]] = {}
            run = uuid.uuid4().hex[:8]

            async def one(i: int) -> None:
                started = time.perf_counter()
                answer = await deps.manager.reply(
                    Turn(
                        workspace_id="T1",
                        channel_id="C1",
                        thread_ts=f"bench-{i}",
                        user_id=f"U{i}",
                        text=f"Question number {i}?",
                        event_id=f"{run}-Ev{i}",
                    )
                )
                latencies.append(time.perf_counter() - started)
                for name, ms in answer.timings.items():
                    phases.setdefault(name, []).append(ms)

            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            wall = time.perf_counter() - started
            await deps.close()
        peak = await llm.peak()
    latencies.sort()
    print(f"conversations:           {n}")
    for name, values in sorted(phases.items()):
        print(f"  phase {name:<16} median {statistics.median(values):8.1f} ms")
    print(f"LLM latency (fake):      {latency:.2f} s")
    print(f"max in flight at LLM:    {peak}")
    print(f"wall time:               {wall:.2f} s  (serial would be {n * latency:.0f} s)")
    print(
        f"reply latency p50/p99:   {statistics.median(latencies):.2f} s / "
        f"{latencies[int(len(latencies) * 0.99) - 1]:.2f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--latency", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.latency))
