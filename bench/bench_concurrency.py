"""How many conversations one process holds in flight while the LLM thinks.

Runs N concurrent `ConversationManager.reply` calls (distinct users and threads) against
the fake OpenAI-compatible server with a fixed latency, on the embedded SQLite database
(or `DATABASE_URL`), and prints how many requests the LLM server saw at once, the wall
time, and per-reply latency percentiles. With perfect concurrency the wall time is close
to one LLM latency, whatever N is.

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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.conversation import Turn  # noqa: E402
from bot.deps import build_deps  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from tests.fakes.openai_server import FakeOpenAIServer  # noqa: E402


async def main(n: int, latency: float) -> None:
    async with FakeOpenAIServer(delay=latency) as fake:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.update(
                {
                    "OPENAI_BASE_URL": fake.url,
                    "OPENAI_API_KEY": "bench",
                    "CANDOR_DATA_DIR": tmp,
                    "CANDOR_BUDGET_DEFAULT_USD": "0",
                }
            )
            deps = await build_deps(load_settings(None))
            latencies: list[float] = []
            run = uuid.uuid4().hex[:8]

            async def one(i: int) -> None:
                started = time.perf_counter()
                await deps.manager.reply(
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

            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            wall = time.perf_counter() - started
            await deps.close()
    latencies.sort()
    print(f"conversations:           {n}")
    print(f"LLM latency (fake):      {latency:.2f} s")
    print(f"max in flight at LLM:    {fake.max_in_flight}")
    print(f"wall time:               {wall:.2f} s  (serial would be {n * latency:.0f} s)")
    print(f"reply latency p50/p99:   {statistics.median(latencies):.2f} s / "
          f"{latencies[int(len(latencies) * 0.99) - 1]:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--latency", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.latency))
