"""The fake OpenAI-compatible server in a process of its own, for the benchmarks.

Running it apart keeps its CPU off Candor's books. It prints its URL, then the highest
number of requests it held at once, every half second. `FakeLLMProcess(latency)` waits
`latency` seconds and sends the fake's one-line answer; with `text=` and `trickle=` it
streams that text in 16-character pieces, `trickle` seconds apart, after `latency`
(the shape of a real streamed answer: first token, then a steady trickle).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = """
import asyncio, sys
from tests.fakes.openai_server import FakeOpenAIServer, Scripted

class Streaming(FakeOpenAIServer):
    async def _chat(self, request):
        if len(sys.argv) > 2:
            self._queue.append(Scripted(text=sys.argv[3], trickle=float(sys.argv[2]), chunk_size=16))
        return await super()._chat(request)

async def serve():
    fake = await Streaming(delay=float(sys.argv[1])).start()
    print(fake.url, flush=True)
    while True:
        await asyncio.sleep(0.5)
        print(fake.max_in_flight, flush=True)

asyncio.run(serve())
"""


class FakeLLMProcess:
    """`async with FakeLLMProcess(latency) as llm:` then `llm.url`, and `await llm.peak()`."""

    def __init__(self, latency: float, *, trickle: float = 0.0, text: str = "") -> None:
        self.latency = latency
        self.trickle = trickle
        self.text = text
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> FakeLLMProcess:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SERVER,
            str(self.latency),
            *((str(self.trickle), self.text) if self.text else ()),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        self.url = (await self._process.stdout.readline()).decode().strip()
        return self

    async def peak(self) -> int:
        """The most requests the server held at once so far."""
        assert self._process is not None and self._process.stdout is not None
        await asyncio.sleep(0.6)
        last = b""
        while True:
            try:
                last = await asyncio.wait_for(self._process.stdout.readline(), 0.2) or last
            except TimeoutError:
                return int(last) if last.strip() else -1

    async def __aexit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            await self._process.wait()
