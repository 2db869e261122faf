"""The LLM gateway: one way to call any OpenAI-compatible chat endpoint.

`LLMGateway.complete` streams a chat completion from the endpoint an `AsyncOpenAI`
client is configured for (`OPENAI_BASE_URL`, so vLLM, Ollama, llama.cpp and
Azure-compatible proxies all work), hands each text delta to a callback, and returns the
text with its `usage`. 429 and 5xx are retried with exponential backoff before the first
byte (`OPENAI_MAX_RETRIES`).

Two bounds hold for every call: `OPENAI_TIMEOUT_SECONDS` is the client's timeout per
read, and `ChatRequest.deadline_seconds` (`OPENAI_TOTAL_TIMEOUT_SECONDS`) is the whole
call's, so a server trickling one token a second cannot hold an answer forever. The
answer's length is bounded by `max_tokens` (sent as `max_tokens`, or
`max_completion_tokens` for reasoning models) and checked here too, for servers that
ignore it; the check tokenizes only once the answer's UTF-8 bytes (an upper bound on its
tokens) could pass the limit, not every delta.

A streamed answer (the hot path) does not go through the SDK: `bot.llm_http` sends the
request the SDK would send (URL, key, headers, timeouts and retries read from the
client) over one shared `aiohttp` session, and parses its server-sent events into plain
dicts. The SDK's request building, its pure-Python HTTP stack and its pydantic model per
chunk cost about two thirds of a streamed call's CPU. A call that is not streamed, and a
client the session cannot stand in for (see `bot.llm_http.supports`), go through the
SDK (`bot.llm_stream` reads the latter's raw stream the same way). Both ways fail with
the same errors: `bot.llm_errors.translate` maps an HTTP status, a timeout or a broken
connection to the same sentence whichever transport saw it.

Usage comes from the server (`stream_options={"include_usage": True}`); when a server
sends none while streaming, we count the tokens ourselves and mark the usage
`estimated=True`, so the ledger can tell the two apart.

Token logprobs, when asked for and sent (streaming or not), come back in
`ChatResult.token_logprobs`, and the first token's alternatives in `first_top_logprobs`:
`bot.confidence` reads them.

Every LLM failure becomes an `LLMError` subclass (`bot.llm_errors`, all importable from
here) whose `user_message` is the one sentence a person sees; the original exception's
kind is logged, never shown (it may carry secrets), and never the API key or the
server's words. A failure after text arrived carries that text in `partial_text`, so the caller can bill
what the model produced. An exception raised by the delta callback (the surface showing
the answer) is not the model's fault: it propagates unchanged, never as an `LLMError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from openai import AsyncOpenAI

from bot.clock import Clock
from bot.llm_errors import (
    LLMAuthFailed,
    LLMContextTooLong,
    LLMError,
    LLMModelNotFound,
    LLMRateLimited,
    LLMStreamCut,
    LLMTimeout,
    LLMToolsUnsupported,
    LLMUnavailable,
    LLMUnreachable,
    deadline_passed,
    translate,
    unreachable_error,
)
from bot.llm_http import ChatStreamHTTP, FailFast, Sleep, supports
from bot.llm_stream import stream_chunks
from bot.tokens import TokenCounter

__all__ = [
    "ChatRequest",
    "ChatResult",
    "DeltaCallback",
    "LLMAuthFailed",
    "LLMContextTooLong",
    "LLMError",
    "LLMGateway",
    "LLMModelNotFound",
    "LLMRateLimited",
    "LLMStreamCut",
    "LLMTimeout",
    "LLMToolsUnsupported",
    "LLMUnavailable",
    "LLMUnreachable",
    "ToolCallRequest",
    "Usage",
    "is_reasoning_model",
    "supports_temperature",
    "supports_vision",
    "unreachable_error",
]

log = logging.getLogger(__name__)

DeltaCallback = Callable[[str], Awaitable[None]]

#: Model families that reject `temperature` (reasoning models) and want
#: `max_completion_tokens` instead of `max_tokens`.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def is_reasoning_model(model: str) -> bool:
    name = model.lower().rsplit("/", 1)[-1]
    return name.startswith(_REASONING_PREFIXES) and not name.startswith("gpt-5-chat")


def supports_temperature(model: str) -> bool:
    return not is_reasoning_model(model)


def supports_vision(model: str) -> bool:
    """Whether `model` accepts image inputs (a conservative allowlist by family)."""
    name = model.lower().rsplit("/", 1)[-1]
    return (
        name.startswith(
            ("gpt-4o", "gpt-4.1", "gpt-4-turbo", "gpt-5", "o1", "o3", "o4", "llava", "gemma3-4b")
        )
        and "mini-tts" not in name
    )


@dataclass(frozen=True)
class Usage:
    """Token counts for one call, from the API's `usage` unless `estimated`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    #: The tier the server says it served the call at (`default`, `flex`, `priority`).
    service_tier: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "total_tokens": self.total_tokens,
            "estimated": self.estimated,
        }


@dataclass(frozen=True)
class ChatRequest:
    """What we send: the model, messages, and the knobs a channel controls."""

    model: str
    messages: Sequence[Mapping[str, Any]]
    temperature: float | None = None
    max_tokens: int = 1024
    logprobs: bool = False
    #: With `logprobs`: how many alternatives per token to ask for (a judge reads "yes"/"no").
    top_logprobs: int | None = None
    stream: bool = True
    #: The whole call's deadline in seconds (None: only the client's per-read timeout).
    deadline_seconds: float | None = None
    #: OpenAI function tools offered to the model (None: no tools, the plain request).
    tools: Sequence[Mapping[str, Any]] | None = None


@dataclass
class ChatResult:
    text: str
    model: str
    usage: Usage
    finish_reason: str | None = None
    token_logprobs: list[float] = field(default_factory=list)
    #: The first token's alternatives (token -> logprob), when `top_logprobs` was asked.
    first_top_logprobs: dict[str, float] = field(default_factory=dict)
    first_token_seconds: float | None = None
    total_seconds: float = 0.0
    #: The tools the model asked to call (empty when it answered).
    tool_calls: list[ToolCallRequest] = field(default_factory=list)


@dataclass(frozen=True)
class ToolCallRequest:
    """One function call the model asked for; `arguments` is the JSON text it wrote."""

    id: str
    name: str
    arguments: str

    def as_message(self) -> dict[str, Any]:
        """The call as it goes back to the model in the assistant message."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


class _SinkFailed(Exception):
    """Carries an exception of the delta callback past the LLM error translation."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


#: Share over `max_tokens` tolerated before the gateway stops a stream itself: our
#: tokenizer is not the server's (text counted in pieces, other model families), and a
#: server that honours the limit always stops first; this only catches servers ignoring it.
_LENGTH_SLACK = 1.5


class LLMGateway:
    """Calls an OpenAI-compatible chat endpoint; see the module docstring."""

    def __init__(
        self,
        client: AsyncOpenAI,
        tokens: TokenCounter,
        *,
        fail_fast: FailFast | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock | None = None,
    ) -> None:
        """`client` is the configuration (URL, key, headers, timeouts, retries) and sends
        what is not streamed; streamed answers go over one `aiohttp` session built from
        it (`bot.llm_http`). `fail_fast` says what a refused connection means (None: a
        failed connection like any other); `sleep` waits between retries and `clock`
        dates a `Retry-After` (tests inject both)."""
        self.client = client
        self.tokens = tokens
        self._http: ChatStreamHTTP | None = None
        if supports(client):
            now = clock.now if clock is not None else None
            self._http = ChatStreamHTTP(client, fail_fast=fail_fast, sleep=sleep, now=now)

    async def aclose(self) -> None:
        """Close the streaming session (the SDK client is closed by its owner)."""
        if self._http is not None:
            await self._http.aclose()

    def build_params(self, request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"model": request.model, "messages": list(request.messages)}
        if request.temperature is not None:
            if supports_temperature(request.model):
                params["temperature"] = request.temperature
            else:
                log.info(
                    "Leaving temperature out: %s is a reasoning model that rejects it.",
                    request.model,
                )
        if is_reasoning_model(request.model):
            params["max_completion_tokens"] = request.max_tokens
        else:
            params["max_tokens"] = request.max_tokens
        if request.logprobs and not is_reasoning_model(request.model):
            params["logprobs"] = True
            if request.top_logprobs:
                params["top_logprobs"] = request.top_logprobs
        if request.stream:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        if request.tools:
            params["tools"] = [dict(tool) for tool in request.tools]
        return params

    async def complete(
        self, request: ChatRequest, on_delta: DeltaCallback | None = None
    ) -> ChatResult:
        """Run one chat completion, streaming deltas to `on_delta`; raise `LLMError`.

        An exception raised by `on_delta` stops the call and propagates unchanged.
        """
        params = self.build_params(request)
        started = time.perf_counter()
        parts: list[str] = []  # text received so far, for `partial_text` on failure
        try:
            async with asyncio.timeout(request.deadline_seconds) as deadline:
                if request.stream:
                    result = await self._stream(params, request, on_delta, started, parts)
                else:
                    result = await self._once(params, request)
        except _SinkFailed as failed:
            raise failed.cause from None
        except LLMError as known:
            known.partial_text = "".join(parts)
            raise
        except Exception as exc:
            err: LLMError
            if isinstance(exc, TimeoutError) and deadline.expired():
                err = deadline_passed(request.deadline_seconds or 0)
            elif parts:
                # Text arrived, then the connection broke: the answer was cut off.
                err = LLMStreamCut(f"{type(exc).__name__} after {len(parts)} deltas")
            else:
                err = translate(exc)
            err.partial_text = "".join(parts)
            if not isinstance(err, LLMUnreachable):  # a setup problem: its sentence says it
                log.warning("LLM call to %s failed: %s", request.model, err.detail)
            raise err from None
        result.total_seconds = time.perf_counter() - started
        return result

    async def _once(self, params: dict[str, Any], request: ChatRequest) -> ChatResult:
        response = await self.client.chat.completions.create(**params)
        choice = response.choices[0]
        text = choice.message.content or ""
        logprobs: list[float] = []
        top: dict[str, float] = {}
        if choice.logprobs is not None and choice.logprobs.content:
            logprobs = [t.logprob for t in choice.logprobs.content]
            top = _alternatives(choice.logprobs.content[0])
        usage = await self._usage_from(response.usage, request, text)
        usage = replace(usage, service_tier=getattr(response, "service_tier", None))
        return ChatResult(
            text=text,
            model=response.model or request.model,
            usage=usage,
            finish_reason=choice.finish_reason,
            token_logprobs=logprobs,
            first_top_logprobs=top,
            tool_calls=_message_tool_calls(choice.message),
        )

    async def _stream(
        self,
        params: dict[str, Any],
        request: ChatRequest,
        on_delta: DeltaCallback | None,
        started: float,
        parts: list[str],
    ) -> ChatResult:
        logprobs: list[float] = []
        top: dict[str, float] = {}
        usage_obj: Any = None
        tier: str | None = None
        finish: str | None = None
        model = request.model
        first: float | None = None
        length = _LengthGuard(self.tokens, request)
        calls = _ToolCallParts()
        async with self._chunks(params) as chunks:
            async for chunk in chunks:
                model = chunk.get("model") or model
                tier = chunk.get("service_tier") or tier
                if chunk.get("usage") is not None:
                    usage_obj = chunk["usage"]
                too_long = False
                for choice in chunk.get("choices") or ():
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                    scored = (choice.get("logprobs") or {}).get("content")
                    if scored:
                        if not logprobs:
                            top = _alternatives(scored[0])
                        logprobs.extend(token["logprob"] for token in scored)
                    delta = choice.get("delta")
                    if not delta:
                        continue
                    if delta.get("tool_calls"):
                        calls.add(delta["tool_calls"])
                    piece = delta.get("content")
                    if piece:
                        if first is None:
                            first = time.perf_counter() - started
                        parts.append(piece)
                        too_long = await length.passed(piece) or too_long
                        if on_delta is not None:
                            try:
                                await on_delta(piece)
                            except Exception as exc:
                                raise _SinkFailed(exc) from exc
                if too_long:
                    # The server ignores max_tokens: stop reading, as it should have.
                    log.warning("%s went past max_tokens=%d; stopped.", model, request.max_tokens)
                    finish = "length"
                    usage_obj = None
                    break
        text = "".join(parts)
        if finish is None and usage_obj is None and (text or calls.parts):
            # The stream ended with neither a finish reason nor usage: it was cut short.
            raise LLMStreamCut("stream ended without finish_reason")
        usage = await self._usage_from(usage_obj, request, text)
        usage = replace(usage, service_tier=tier)
        return ChatResult(
            text=text,
            model=model,
            usage=usage,
            finish_reason=finish,
            token_logprobs=logprobs,
            first_top_logprobs=top,
            first_token_seconds=first,
            tool_calls=calls.calls(),
        )

    @asynccontextmanager
    async def _chunks(
        self, params: dict[str, Any]
    ) -> AsyncIterator[AsyncGenerator[dict[str, Any], None]]:
        """The streamed answer's chunks, each the dict `json.loads` made: over our own
        session, or (a client it cannot stand in for) from the SDK's raw response."""
        if self._http is not None:
            async with aclosing(self._http.stream(params)) as chunks:
                yield chunks
            return
        create = self.client.chat.completions.with_streaming_response.create
        async with (
            create(**params) as response,
            aclosing(stream_chunks(response.http_response)) as chunks,
        ):
            yield chunks

    async def _usage_from(self, usage: Any, request: ChatRequest, text: str) -> Usage:
        """`usage` (a dict from the stream, the SDK's object from `_once`) as a `Usage`;
        counted by us, exactly, on the whole text, when the server sent none."""
        if usage is None or not _field(usage, "prompt_tokens"):
            await self.tokens.ensure(request.model)
            return Usage(
                prompt_tokens=self.tokens.count_messages(request.messages, request.model),
                completion_tokens=self.tokens.count(text, request.model),
                estimated=True,
            )
        prompt_details = _field(usage, "prompt_tokens_details")
        completion_details = _field(usage, "completion_tokens_details")
        return Usage(
            prompt_tokens=int(_field(usage, "prompt_tokens") or 0),
            completion_tokens=int(_field(usage, "completion_tokens") or 0),
            cached_tokens=int(_field(prompt_details, "cached_tokens") or 0),
            reasoning_tokens=int(_field(completion_details, "reasoning_tokens") or 0),
        )


def _field(obj: Any, name: str) -> Any:
    """A field of an API object: a dict when streamed, the SDK's model from `_once`."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _alternatives(token: Any) -> dict[str, float]:
    """A token's `top_logprobs` as {token: logprob} (empty when the server sent none)."""
    return {_field(t, "token"): _field(t, "logprob") for t in _field(token, "top_logprobs") or ()}


class _LengthGuard:
    """Tells when a streamed answer went past `max_tokens` (times `_LENGTH_SLACK`),
    without running the tokenizer on every delta.

    A token is at least one byte of UTF-8, so the bytes not yet tokenized bound their
    tokens from above: the tokenizer runs on the text since its last run only when that
    bound could take the count past the limit. An answer well inside its limit is never
    tokenized while it streams; one nearing it is, in pieces that shrink as it gets close.
    """

    def __init__(self, tokens: TokenCounter, request: ChatRequest) -> None:
        self.tokens = tokens
        self.model = request.model
        self.limit = int(request.max_tokens * _LENGTH_SLACK) + 32
        self.counted = 0  # tokens in the text already tokenized
        self.pending: list[str] = []  # text since then
        self.pending_bytes = 0

    async def passed(self, delta: str) -> bool:
        """Add `delta`; whether the answer is now past the limit."""
        self.pending.append(delta)
        self.pending_bytes += len(delta.encode("utf-8", "surrogatepass"))
        if self.counted + self.pending_bytes <= self.limit:
            return False
        await self.tokens.ensure(self.model)  # off the loop, the first time it is needed
        self.counted += self.tokens.count("".join(self.pending), self.model)
        self.pending = []
        self.pending_bytes = 0
        return self.counted > self.limit


# --- tool calls (the loop itself lives in `bot.tools`) ------------------------------------


def _message_tool_calls(message: Any) -> list[ToolCallRequest]:
    """The function calls of a non-streamed assistant message."""
    calls: list[ToolCallRequest] = []
    for n, call in enumerate(getattr(message, "tool_calls", None) or []):
        function = getattr(call, "function", None)
        if function is None or not getattr(function, "name", None):
            continue
        calls.append(
            ToolCallRequest(
                id=str(getattr(call, "id", None) or f"call_{n}"),
                name=str(function.name),
                arguments=str(function.arguments or ""),
            )
        )
    return calls


class _ToolCallParts:
    """Streamed function calls arrive in pieces keyed by `index`; this joins them."""

    def __init__(self) -> None:
        self.parts: dict[int, dict[str, str]] = {}

    def add(self, deltas: Sequence[Mapping[str, Any]]) -> None:
        for delta in deltas:
            index = int(delta.get("index") or 0)
            part = self.parts.setdefault(index, {"id": "", "name": "", "arguments": ""})
            if delta.get("id"):
                part["id"] = str(delta["id"])
            function = delta.get("function")
            if function:
                if function.get("name"):
                    part["name"] += str(function["name"])
                if function.get("arguments"):
                    part["arguments"] += str(function["arguments"])

    def calls(self) -> list[ToolCallRequest]:
        return [
            ToolCallRequest(
                id=part["id"] or f"call_{index}", name=part["name"], arguments=part["arguments"]
            )
            for index, part in sorted(self.parts.items())
            if part["name"]
        ]
