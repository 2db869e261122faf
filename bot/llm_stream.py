"""Reading a streamed chat completion: server-sent events in, JSON chunks out.

`LLMGateway._stream` reads the raw HTTP response and hands it to `stream_chunks`, which
parses the event stream itself instead of letting the SDK's `AsyncStream` build a
pydantic model for every chunk (about half the CPU of a streamed call). The chunks stay
the plain dicts `json.loads` made; what the SDK's stream does besides (an `{"error": ...}`
event raises, read timeouts and broken connections become the SDK's exception types) is
done here the same way, so the gateway maps every failure as before.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import httpx2
import openai

#: How long to read on after `[DONE]` so the connection goes back to the pool (the SDK's).
DRAIN_SECONDS = 0.1


class EventStreamDecoder:
    """Server-sent events, incrementally: bytes in, each event's `data` out.

    The rules the SDK's decoder follows (WHATWG event streams): a line ends at LF, CR or
    CRLF, also when a read splits it; `:` lines are comments (keepalives); an event's
    `data:` lines are joined by newlines; an empty line ends the event. `event:`, `id:`
    and `retry:` are read past: chat completions do not use them. Where the SDK would
    differ: an event without data is skipped (the SDK fails parsing it as JSON). As in
    the SDK, a last event never ended by its empty line is dropped.
    """

    def __init__(self) -> None:
        self._tail = b""  # a line not ended yet
        self._data: list[bytes] = []  # the current event's data lines
        self._skip_lf = False  # the last read ended with CR: a LF next is the same CRLF

    def feed(self, read: bytes) -> list[bytes]:
        """The data of each event `read` completes, in order."""
        if self._skip_lf:
            self._skip_lf = False
            if read.startswith(b"\n"):
                read = read[1:]
        if b"\r" in read:
            self._skip_lf = read.endswith(b"\r")
            read = read.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = (self._tail + read).split(b"\n")
        self._tail = lines.pop()
        events: list[bytes] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            elif line == b"data":
                self._data.append(b"")
        return events


async def stream_chunks(response: httpx2.Response) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON chunks of a streamed chat completion up to `[DONE]`, as plain dicts.

    What the SDK's `AsyncStream` does, without building a model per chunk: an
    `{"error": ...}` chunk raises `openai.APIError`, and a timeout or a broken connection
    while reading becomes `APITimeoutError` / `APIConnectionError`, so `complete` maps
    them as before. Payloads that are not JSON objects carry no chunk and are skipped.
    """
    decoder = EventStreamDecoder()
    reads = response.aiter_bytes()
    try:
        async for read in reads:
            for data in decoder.feed(read):
                if data.startswith(b"[DONE]"):
                    if response.http_version == "HTTP/1.1":  # HTTP/2 needs no draining
                        await _drain(reads)
                    return
                chunk = json.loads(data)
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("error"):
                    raise _stream_error(chunk["error"], response.request)
                yield chunk
    except httpx2.TimeoutException as err:
        raise openai.APITimeoutError(request=response.request) from err
    except (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream) as err:
        raise openai.APIConnectionError(request=response.request) from err
    finally:
        await reads.aclose()


async def _drain(reads: AsyncGenerator[bytes, None]) -> None:
    """Read what follows `[DONE]` (the end of the body), briefly, so that HTTP/1.1 can
    reuse the connection; a server that keeps talking loses its connection instead."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in reads:
                pass
    except (TimeoutError, httpx2.RequestError, ssl.SSLError, anyio.EndOfStream):
        pass  # the answer is complete; only the connection is lost


def _stream_error(error: Any, request: httpx2.Request) -> openai.APIError:
    """An `{"error": ...}` chunk as the SDK raises it (its message is for logs only)."""
    message = error.get("message") if isinstance(error, dict) else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    return openai.APIError(message, request, body=error)
