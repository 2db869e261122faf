"""End to end through Slack's HTTP path: acks, conversations in flight, one answer each.

Starts the fake Slack Web API (in this process) and the fake OpenAI-compatible server
(in its own process, with a fixed latency), builds Candor exactly as `candor serve --http`
does, then delivers N signed `app_mention` events at once, and each again as a Slack
retry. Prints the ack latency percentiles Slack would see (it wants < 3 s), how many LLM
requests were in flight at once, and how many answers were posted (must be N).

    .venv/bin/python bench/bench_slack.py --n 200 --latency 10

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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydantic import SecretStr

from bench.fake_llm_process import FakeLLMProcess
from bot.deps import build_deps
from bot.settings import load_settings
from handlers.app import EVENTS_PATH, SlackRuntime
from tests.fakes.slack_events import SIGNING_SECRET, SlackEventSender, app_mention, event_callback
from tests.fakes.slack_server import FakeSlackServer


async def main(n: int, latency: float) -> None:
    async with FakeLLMProcess(latency) as llm:
        url = llm.url
        async with FakeSlackServer() as slack:
            with tempfile.TemporaryDirectory() as tmp:
                os.environ.update(
                    {
                        "OPENAI_BASE_URL": url,
                        "OPENAI_API_KEY": "bench",
                        "OPENAI_TIMEOUT_SECONDS": str(latency * 10 + 30),
                        "CANDOR_DATA_DIR": tmp,
                        "CANDOR_BUDGET_DEFAULT_USD": "0",
                    }
                )
                settings = load_settings(None)
                settings.slack.bot_token = SecretStr("xoxb-bench")
                settings.slack.signing_secret = SecretStr(SIGNING_SECRET)
                settings.slack.api_url = slack.url
                deps = await build_deps(settings)
                runtime = SlackRuntime.build(deps)
                port = await runtime.start_http(0, host="127.0.0.1")
                sender = SlackEventSender(f"http://127.0.0.1:{port}{EVENTS_PATH}")
                bodies = [
                    event_callback(app_mention(f"<@UBOT> question {i}?", user=f"U{i}"))
                    for i in range(n)
                ]
                acks: list[float] = []

                async def deliver(body: dict[str, object], retry: int | None) -> None:
                    started = time.perf_counter()
                    status, _ = await sender.event(body, retry_num=retry)
                    acks.append(time.perf_counter() - started)
                    assert status == 200, status

                started = time.perf_counter()
                await asyncio.gather(*(deliver(b, None) for b in bodies))
                await asyncio.gather(*(deliver(b, 1) for b in bodies))
                await runtime.surface.idle(timeout=latency * 10 + 120)
                wall = time.perf_counter() - started
                answers = [m for m in slack.messages() if m.thread_ts]
                await runtime.shutdown(grace_seconds=5)
                await deps.close()
        in_flight = await llm.peak()
    acks.sort()
    print(f"events delivered:        {n} (+ {n} retries)")
    print(
        f"ack p50 / p99 / max:     {statistics.median(acks) * 1000:.0f} / "
        f"{acks[int(len(acks) * 0.99) - 1] * 1000:.0f} / {acks[-1] * 1000:.0f} ms"
    )
    print(f"max LLM calls in flight: {in_flight}")
    print(f"threaded answers posted: {len(answers)}")
    print(f"wall time:               {wall:.1f} s with a {latency:.1f} s LLM")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--latency", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.latency))
