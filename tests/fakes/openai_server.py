"""A fake OpenAI-compatible server: real HTTP on loopback, scripted replies.

Like simonw/llm's fake models, but over the wire, so the real `AsyncOpenAI` client and
its retries, streaming parser and error mapping are exercised. `enqueue()` scripts the
next replies; `requests` records every request body the server received.

    async with FakeOpenAIServer() as fake:
        fake.enqueue("Hello!", usage=True)
        client = AsyncOpenAI(base_url=fake.url, api_key="test")

Scripted failures: `enqueue_error(429)` (with Retry-After: 0), `enqueue_error(500)`,
`enqueue_error(400, code="context_length_exceeded")`, `enqueue_error(401)`,
`enqueue_error(429, headers={"Retry-After": "7"})` (any headers instead of the default), and
`delay` for timeouts and concurrency tests. While streaming: `trickle=0.2` waits that many
seconds before each piece (a slow server that never trips a per-read timeout), and
`cut_after=2` drops the connection after that many pieces (no finish, no usage, no
`[DONE]`), and `error_after=1` sends an in-stream `{"error": ...}` event after that many
pieces (as vLLM or a proxy does once the 200 is sent), then `[DONE]`.

The event stream's wire format, for clients that parse it themselves: `keepalive=True`
sends a `: keepalive` comment line and `event:`/`id:` fields with every event,
`line_end="\r\n"` (or `"\r"`) ends lines that way, `multiline_data=True` spreads each
event's JSON over several `data:` lines, and `split_writes=7` writes every event in
7-byte pieces with a pause between them, so a client reads lines split across reads.
`peers` records the client address of every chat request (one per connection used),
`headers` and `queries` its headers and query string.

Images: `POST /v1/images/generations` is recorded in `image_requests` and answered with
`image_bytes` as `b64_json` (or `image_url`, when set, as `url`).

Logprobs (sent when the request asks for them): `logprob=-0.05` for every token, or
`logprobs=[-0.1, -2.3, ...]` one per piece (streaming) / per word (whole answer), and
`top_logprobs={"yes": -0.1, "no": -2.4}` as the first token's alternatives (what a judge
reads); `no_logprobs=True` plays a server that never sends them. `FakeOpenAIServer(
restate=True)` answers every unscripted request by restating the question (the last user
message) and citing [1], the setting in which confidence is evaluated.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Scripted:
    text: str = ""
    status: int = 200
    error_code: str | None = None
    error_message: str = ""
    delay: float = 0.0
    usage: bool = True
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    logprob: float = -0.05
    chunk_size: int = 8
    model: str | None = None
    trickle: float = 0.0
    cut_after: int | None = None
    service_tier: str | None = None  # sent back as the response's `service_tier`
    #: Function calls to ask for: (name, arguments) pairs; the arguments a dict or raw text.
    tool_calls: tuple[tuple[str, Any], ...] = ()
    #: Answer a request that offers `tools` with a 400 (a server without tool support).
    reject_tools: bool = False
    logprobs: list[float] | None = None  # one per token (piece when streaming, else word)
    top_logprobs: dict[str, float] | None = None  # the first token's alternatives
    no_logprobs: bool = False  # a server that never returns logprobs
    error_after: int | None = None  # an in-stream error event after that many pieces
    keepalive: bool = False  # `: keepalive` comments and `event:`/`id:` fields per event
    line_end: str = "\n"  # "\r\n" or "\r" as some servers and proxies send
    multiline_data: bool = False  # each event's JSON over several `data:` lines
    split_writes: int | None = None  # write events in pieces of this many bytes
    #: Headers of an error reply (None: `Retry-After: 0` on a 429, as OpenAI's API sends).
    error_headers: dict[str, str] | None = None


@dataclass
class FakeOpenAIServer:
    """See the module docstring."""

    default_text: str = "This is the fake model's answer."
    delay: float = 0.0
    restate: bool = False  # unscripted replies restate the question and cite [1]
    requests: list[dict[str, Any]] = field(default_factory=list)
    embedding_requests: list[dict[str, Any]] = field(default_factory=list)
    #: Bodies of `POST /v1/images/generations`; each is answered with `image_bytes`
    #: (as `b64_json`), or with `image_url` only when that is set.
    image_requests: list[dict[str, Any]] = field(default_factory=list)
    image_bytes: bytes = b"\x89PNG\r\n\x1a\nfake-image"
    image_url: str | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    #: The client address (host, port) of every chat request, in order.
    peers: list[Any] = field(default_factory=list)
    #: The headers and the query string of every chat request, in order.
    headers: list[dict[str, str]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queue: deque[Scripted] = deque()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- scripting -------------------------------------------------------------------

    def enqueue(self, text: str, **options: Any) -> None:
        self._queue.append(Scripted(text=text, **options))

    def enqueue_error(
        self,
        status: int,
        *,
        code: str | None = None,
        message: str = "",
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Script `times` error replies; `headers` replaces the default `Retry-After: 0`."""
        for _ in range(times):
            self._queue.append(
                Scripted(
                    status=status,
                    error_code=code,
                    error_message=message or f"error {status}",
                    error_headers=headers,
                )
            )

    def enqueue_tool_calls(self, *calls: tuple[str, Any], text: str = "", **options: Any) -> None:
        """Script a reply asking for `calls` ((name, arguments) pairs) instead of answering."""
        self._queue.append(Scripted(text=text, tool_calls=tuple(calls), **options))

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> FakeOpenAIServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeOpenAIServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- handlers --------------------------------------------------------------------

    async def _models(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.queries.append(request.query_string)
        if request.transport is not None:
            self.peers.append(request.transport.get_extra_info("peername"))
        if self._queue:
            script = self._queue.popleft()
        elif self.restate:
            script = Scripted(text=restated(body))
        else:
            script = Scripted(text=self.default_text)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = script.delay or self.delay
            if delay:
                await asyncio.sleep(delay)
            if script.reject_tools and body.get("tools"):
                script = Scripted(status=400, error_message="tools is not supported for this model")
            if script.status != 200:
                return self._error(script)
            if body.get("stream"):
                return await self._stream(request, body, script)
            return web.json_response(self._completion(body, script))
        finally:
            self.in_flight -= 1

    def _error(self, script: Scripted) -> web.Response:
        headers = {"Retry-After": "0"} if script.status == 429 else {}
        if script.error_headers is not None:
            headers = script.error_headers
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            404: "not_found_error",
            429: "rate_limit_exceeded",
        }.get(script.status, "server_error")
        return web.json_response(
            {"error": {"message": script.error_message, "type": kind, "code": script.error_code}},
            status=script.status,
            headers=headers,
        )

    def _usage(self, body: dict[str, Any], script: Scripted) -> dict[str, Any]:
        prompt = script.prompt_tokens
        if prompt is None:
            prompt = sum(len(json.dumps(m.get("content", ""))) // 4 + 4 for m in body["messages"])
        completion = script.completion_tokens
        if completion is None:
            completion = max(1, len(script.text) // 4)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": script.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    def _completion(self, body: dict[str, Any], script: Scripted) -> dict[str, Any]:
        logprobs = None
        if body.get("logprobs") and not script.no_logprobs:
            logprobs = {
                "content": [_token(script, i, w) for i, w in enumerate(script.text.split())]
            }
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": script.model or body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": script.text or (None if script.tool_calls else ""),
                        **(
                            {"tool_calls": [_call(n, c) for n, c in enumerate(script.tool_calls)]}
                            if script.tool_calls
                            else {}
                        ),
                    },
                    "finish_reason": "tool_calls" if script.tool_calls else "stop",
                    "logprobs": logprobs,
                }
            ],
            "usage": self._usage(body, script) if script.usage else None,
            **({"service_tier": script.service_tier} if script.service_tier else {}),
        }

    async def _stream(
        self, request: web.Request, body: dict[str, Any], script: Scripted
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        model = script.model or body["model"]
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            **({"service_tier": script.service_tier} if script.service_tier else {}),
        }
        text = script.text
        pieces = [text[i : i + script.chunk_size] for i in range(0, len(text), script.chunk_size)]
        first = True
        loop = asyncio.get_running_loop()
        started = loop.time()
        for n, piece in enumerate(pieces):
            if script.cut_after is not None and n >= script.cut_after:
                # Drop the connection mid-answer, as a crashing server or proxy would.
                if request.transport is not None:
                    request.transport.close()
                return response
            if script.error_after is not None and n >= script.error_after:
                error = {"message": "The model crashed.", "type": "server_error", "code": 500}
                await _send(response, script, {"error": error})
                await _send(response, script, "[DONE]")
                await response.write_eof()
                return response
            if script.trickle:
                # On a schedule, as a real model's tokens are: a busy machine delays a piece,
                # it does not push every later piece back.
                await asyncio.sleep(max(0.0, started + (n + 1) * script.trickle - loop.time()))
            delta: dict[str, Any] = {"content": piece}
            if first:
                delta["role"] = "assistant"
                first = False
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
            if body.get("logprobs") and not script.no_logprobs:
                choice["logprobs"] = {"content": [_token(script, n, piece)]}
            await _send(response, script, {**base, "choices": [choice]})
        for n, call in enumerate(script.tool_calls):
            whole = _call(n, call)
            arguments = whole["function"]["arguments"]
            half = len(arguments) // 2
            # The name and the first half of the arguments, then the rest: clients join them.
            for piece in (
                {
                    "index": n,
                    "id": whole["id"],
                    "type": "function",
                    "function": {"name": whole["function"]["name"], "arguments": arguments[:half]},
                },
                {"index": n, "function": {"arguments": arguments[half:]}},
            ):
                await _send(
                    response,
                    script,
                    {
                        **base,
                        "choices": [
                            {"index": 0, "delta": {"tool_calls": [piece]}, "finish_reason": None}
                        ],
                    },
                )
        finish = "tool_calls" if script.tool_calls else "stop"
        await _send(
            response,
            script,
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
        )
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        if script.usage and include_usage:
            await _send(
                response, script, {**base, "choices": [], "usage": self._usage(body, script)}
            )
        await _send(response, script, "[DONE]")
        await response.write_eof()
        return response

    async def _images(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.image_requests.append(body)
        item: dict[str, Any] = (
            {"url": self.image_url}
            if self.image_url
            else {"b64_json": base64.b64encode(self.image_bytes).decode("ascii")}
        )
        item["revised_prompt"] = str(body.get("prompt", ""))
        return web.json_response(
            {"created": int(time.time()), "data": [item] * int(body.get("n") or 1)}
        )

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.embedding_requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = int(body.get("dimensions") or 64)
        data = [
            {"object": "embedding", "index": i, "embedding": fake_embedding(str(text), dims)}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(str(t)) // 4 + 1 for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "text-embedding-3-small"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def fake_embedding(text: str, dims: int = 64) -> list[float]:
    """A deterministic bag-of-words vector: texts sharing words are close."""
    vector = [0.0] * dims
    for word in text.lower().split():
        digest = hashlib.sha256(word.strip(".,!?;:").encode()).digest()
        vector[digest[0] % dims] += 1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


def _token(script: Scripted, n: int, token: str) -> dict[str, Any]:
    """One token's logprob entry, as scripted."""
    values = script.logprobs
    logprob = values[min(n, len(values) - 1)] if values else script.logprob
    top = []
    if n == 0 and script.top_logprobs:
        top = [{"token": t, "logprob": lp, "bytes": None} for t, lp in script.top_logprobs.items()]
    return {"token": token, "logprob": logprob, "bytes": None, "top_logprobs": top}


def restated(body: dict[str, Any]) -> str:
    """The question (the last user message) restated, citing source [1]."""
    question = ""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            question = message["content"]
            break
    return f"{question.strip().rstrip('?.!')} [1]."


def _call(n: int, call: tuple[str, Any]) -> dict[str, Any]:
    name, arguments = call
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "id": f"call_{n}_{name}",
        "type": "function",
        "function": {"name": name, "arguments": text},
    }


async def _send(
    response: web.StreamResponse, script: Scripted, payload: dict[str, Any] | str
) -> None:
    """Write one server-sent event (`payload`, or the text `[DONE]`) as `script` says."""
    await _write(response, script, _sse(payload, script))


def _sse(payload: dict[str, Any] | str, script: Scripted) -> bytes:
    end = script.line_end
    data = payload if isinstance(payload, str) else json.dumps(payload)
    lines: list[str] = []
    keepalive = ""
    if script.keepalive:
        # A comment on its own (what proxies send while the model thinks), then fields
        # chat completions do not use.
        keepalive = f": keepalive{end}{end}"
        lines += ["event: chunk", "id: 1", ": still here"]
    if script.multiline_data and not isinstance(payload, str):
        # Newlines between JSON tokens only: joined again, the data is the same JSON.
        lines += [f"data: {line}" for line in json.dumps(payload, indent=1).split("\n")]
    else:
        lines.append(f"data: {data}")
    return (keepalive + "".join(line + end for line in lines) + end).encode()


async def _write(response: web.StreamResponse, script: Scripted, data: bytes) -> None:
    """`data` at once, or with `split_writes` in pieces of that many bytes, also cut
    between the CR and the LF of every CRLF (the case a line decoder must carry over)."""
    size = script.split_writes
    if not size:
        await response.write(data)
        return
    cuts = set(range(size, len(data), size))
    cuts.update(n + 1 for n in range(len(data) - 1) if data[n : n + 2] == b"\r\n")
    start = 0
    for end in [*sorted(cuts), len(data)]:
        await response.write(data[start:end])
        start = end
        await asyncio.sleep(0.001)  # let the client read this piece on its own
