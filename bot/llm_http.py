"""Streamed chat completions over one shared `aiohttp` session.

Every streamed answer used to pay for the OpenAI SDK's request building and for reading
each chunk through httpx2, httpcore2, h11 and anyio, all pure Python. `ChatStreamHTTP`
sends the same request over one `aiohttp.ClientSession` (HTTP parsed in C, one
connection pool for the process) and hands back the response body's event stream.

Nothing is configured twice: the URL, the API key, the headers (User-Agent, the SDK's
`X-Stainless-*`, `OpenAI-Organization`/`OpenAI-Project`, `default_headers` and
`OPENAI_CUSTOM_HEADERS`), `default_query`, the timeouts and `max_retries` are read from
the `AsyncOpenAI` client that `bot.deps` builds. What the SDK does around a request is
done the same way: 408/409/429/5xx and failed connections or timeouts before the first
byte are retried with its backoff (0.5 s doubling to 8 s, less up to a quarter), a
`Retry-After`/`retry-after-ms` of up to two minutes is waited instead and a longer one
is not retried, `x-should-retry` is obeyed; the client's timeout is the timeout per
read; proxies come from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
`NO_PROXY`, read once when the session opens: a session that trusts the environment
reads it, and `~/.netrc`, on a worker thread for every request) and certificates are
checked with httpx2's context. With `FailFast` a refused connection ends the call as `bot.deps` does for the
SDK (at once when `OPENAI_BASE_URL` is set, after the retries for OpenAI itself).

Failures are raised as `UpstreamError` (a kind, the HTTP status and the body's message),
which `bot.llm` maps to the sentence a person sees. Neither the key nor the headers are
ever logged or put in an error.

A client the session cannot stand in for (a key fetched by a callable, workload
identity, a provider, Azure's deployments) is left to the SDK: see `supports`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import aiohttp
import httpx2
import openai
from aiohttp.helpers import get_env_proxy_for_url
from openai import AsyncOpenAI
from yarl import URL

from bot.clock import SystemClock
from bot.llm_stream import DRAIN_SECONDS, EventStreamDecoder

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Now = Callable[[], datetime]

#: The SDK's backoff (`openai._constants`): 0.5 s doubling up to 8 s; a server may ask for
#: up to two minutes with `Retry-After`, and a longer wait is not retried at all.
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 120.0
#: The SDK's connection limit; idle connections close after httpx2's 5 s keep-alive.
MAX_CONNECTIONS = 1000
KEEPALIVE_SECONDS = 5.0

Kind = Literal["status", "timeout", "connection", "unreachable", "stream", "other"]


class UpstreamError(Exception):
    """An LLM request that failed, before `bot.llm` turns it into a sentence.

    `kind`: `status` (an HTTP error status), `timeout` (no byte within the read timeout),
    `connection` (failed or broken), `unreachable` (refused, and `FailFast` says stop),
    `stream` (an `{"error": ...}` event after the 200), `other`. `message` is what the
    SDK would put in its exception (`Error code: 400 - <the error's message>`) and `body`
    the response text: both for matching and logs, never shown. `where` is host:port.
    """

    def __init__(
        self,
        kind: Kind,
        name: str,
        *,
        status: int | None = None,
        message: str = "",
        body: str = "",
        where: str = "",
        configured: bool = False,
    ) -> None:
        super().__init__(name)
        self.kind = kind
        self.name = name
        self.status = status
        self.message = message
        self.body = body
        self.where = where
        self.configured = configured


@dataclass(frozen=True)
class FailFast:
    """What a refused connection means (the policy of `bot.deps.FailFastTransport`).

    `configured` (`OPENAI_BASE_URL` set): the server is not running, so the first refusal
    ends the call. Otherwise (OpenAI itself) a blip may pass: refusals are retried like
    any failed connection, and the last one says to check the network.
    """

    configured: bool

    def gives_up(self, attempt: int, max_retries: int) -> bool:
        return self.configured or attempt >= max_retries


def supports(client: AsyncOpenAI) -> bool:
    """Whether `ChatStreamHTTP` can send what `client` sends: a fixed API key and headers.

    Azure (deployment URLs, its own key header), a provider, workload identity and a key
    fetched by a callable (the last two leave `api_key` empty or a placeholder) stay on
    the SDK, which knows how to sign their requests.
    """
    return (
        type(client) is AsyncOpenAI
        and bool(client.api_key)
        and getattr(client, "workload_identity", None) is None
        and client.custom_auth is None
    )


def status_message(status: int, body: str) -> str:
    """The text of the SDK's `APIStatusError` for this response (`bot.llm` matches it)."""
    message = f"Error code: {status}"
    try:
        parsed = json.loads(body)
    except ValueError:
        return message
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
    text = error.get("message") if isinstance(error, dict) else None
    if isinstance(text, str) and text:
        message += f" - {text}"
    return message


class ChatStreamHTTP:
    """POSTs streamed chat completions for `client` over one session; see the module
    docstring. Create it anywhere; the session opens in the first call's event loop.
    `sleep` waits between retries and `now` dates a `Retry-After` given as a date (tests
    inject both)."""

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        fail_fast: FailFast | None = None,
        sleep: Sleep = asyncio.sleep,
        now: Now | None = None,
    ) -> None:
        base = client.base_url
        url = base.join("chat/completions")
        query = dict(client.default_query)
        if query:
            url = url.copy_merge_params(client.qs.stringify(cast(Any, query)))
        self.url = URL(str(url), encoded=True)
        self.where = f"{base.host}:{base.port or 443}"
        self.max_retries = client.max_retries
        self.timeout = _timeouts(client.timeout)
        self.fail_fast = fail_fast
        self._sleep = sleep
        self._now = now or SystemClock().now
        self._client = client
        self._headers: dict[str, str] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ssl: ssl.SSLContext | bool = True
        self._proxy: Proxy = Proxy()

    async def stream(self, params: Mapping[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """The JSON chunks of the streamed completion `params` asks for, up to `[DONE]`,
        as plain dicts. Close it (`aclosing`): the connection goes back to the pool when
        the body was read to its end, else it is closed.

        As `bot.llm_stream.stream_chunks` does for the SDK's response: an `{"error": ...}`
        chunk raises (kind `stream`), a read timeout or a broken connection raises (kinds
        `timeout`, `connection`); payloads that are not JSON objects are skipped.
        """
        response = await self._send(_dumps(params))
        decoder = EventStreamDecoder()
        content = response.content
        try:
            while read := await content.readany():
                for data in decoder.feed(read):
                    if data.startswith(b"[DONE]"):
                        await _drain(content)
                        return
                    chunk = json.loads(data)
                    if not isinstance(chunk, dict):
                        continue
                    if chunk.get("error"):
                        raise _stream_error(chunk["error"])
                    yield chunk
        except TimeoutError as error:
            raise UpstreamError("timeout", type(error).__name__) from None
        except (aiohttp.ClientError, ssl.SSLError, OSError) as error:
            raise UpstreamError("connection", type(error).__name__) from None
        finally:
            response.release()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the request, with the SDK's retries before the first byte ---------------------

    async def _send(self, body: bytes) -> aiohttp.ClientResponse:
        session = await self._open()
        assert self._headers is not None
        retries = self.max_retries
        for attempt in range(retries + 1):
            headers = {**self._headers, "x-stainless-retry-count": str(attempt)}
            last = attempt >= retries
            try:
                response = await session.post(
                    self.url,
                    data=body,
                    headers=headers,
                    proxy=self._proxy.url,
                    proxy_auth=self._proxy.auth,
                )
            except aiohttp.ClientConnectorError as error:
                if self.fail_fast is not None and self.fail_fast.gives_up(attempt, retries):
                    raise self._failure("unreachable", error) from None
                if last:
                    raise self._failure("connection", error) from None
                await self._backoff(attempt, None, type(error).__name__)
                continue
            except TimeoutError as error:
                if last:
                    raise self._failure("timeout", error) from None
                await self._backoff(attempt, None, type(error).__name__)
                continue
            except (aiohttp.ClientError, ssl.SSLError, OSError) as error:
                if last:
                    raise self._failure("connection", error) from None
                await self._backoff(attempt, None, type(error).__name__)
                continue
            if response.status < 400:
                return response
            try:
                text = (await response.read()).decode("utf-8", "replace")
            except (aiohttp.ClientError, OSError, TimeoutError):
                text = ""
            finally:
                response.release()
            if not last and self._should_retry(response.status, response.headers):
                await self._backoff(attempt, response.headers, f"HTTP {response.status}")
                continue
            raise UpstreamError(
                "status",
                f"HTTP {response.status}",
                status=response.status,
                message=status_message(response.status, text),
                body=text,
                where=self.where,
            )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _failure(self, kind: Kind, error: BaseException) -> UpstreamError:
        configured = self.fail_fast is not None and self.fail_fast.configured
        return UpstreamError(kind, type(error).__name__, where=self.where, configured=configured)

    def _should_retry(self, status: int, headers: Mapping[str, str]) -> bool:
        """The SDK's `_should_retry`."""
        after = self._retry_after(headers)
        if after is not None and math.isfinite(after) and after > MAX_RETRY_AFTER:
            return False
        told = headers.get("x-should-retry")
        if told in ("true", "false"):
            return told == "true"
        return status in (408, 409, 429) or status >= 500

    async def _backoff(self, attempt: int, headers: Mapping[str, str] | None, why: str) -> None:
        """Wait before retry `attempt + 1`: the server's `Retry-After` when it gave a
        usable one, else the SDK's exponential backoff with jitter."""
        after = self._retry_after(headers) if headers is not None else None
        if after is not None and math.isfinite(after) and 0 < after <= MAX_RETRY_AFTER:
            delay = after
        else:
            delay = min(INITIAL_RETRY_DELAY * 2.0 ** min(attempt, 1000), MAX_RETRY_DELAY)
            delay *= 1 - 0.25 * random.random()
        log.debug(
            "Retrying the LLM request in %.2f s (retry %d of %d): %s",
            delay,
            attempt + 1,
            self.max_retries,
            why,
        )
        await self._sleep(delay)

    def _retry_after(self, headers: Mapping[str, str]) -> float | None:
        """Seconds the server asks to wait (`retry-after-ms`, `retry-after` in seconds or
        as an HTTP date), as the SDK reads them; None when it asks nothing readable."""
        for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
            value = headers.get(name)
            if value is None:
                continue
            try:
                delay = float(value)
            except ValueError:
                continue
            if delay == math.inf and value.strip().lower() not in ("inf", "+inf", "infinity"):
                return MAX_RETRY_AFTER + 1  # an overflowing number: too long, not malformed
            return delay / divisor
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        return (when - self._now()).total_seconds()

    # --- the session --------------------------------------------------------------------

    async def _open(self) -> aiohttp.ClientSession:
        """The shared session, opened in the running loop on first use."""
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and not session.closed and self._loop is loop:
            return session
        if self._headers is None:
            # Once, off the loop: the SDK's platform headers may read /etc/os-release (it
            # caches them) and the certificates are read from files. The other headers
            # (`X-Stainless-Async`) must be read in the loop.
            self._ssl, self._proxy = await asyncio.to_thread(self._read_files)
            self._headers = sdk_headers(self._client)
            # Answers that started meanwhile waited here too: the first opens the session.
            session = self._session
            if session is not None and not session.closed and self._loop is loop:
                return session
        self._loop = loop
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=MAX_CONNECTIONS,
                keepalive_timeout=KEEPALIVE_SECONDS,
                ssl=self._ssl,
            ),
            timeout=self.timeout,
        )
        return self._session

    def _read_files(self) -> tuple[ssl.SSLContext | bool, Proxy]:
        self._client.platform_headers()
        proxy = Proxy.from_environment(self.url)
        if self.url.scheme == "https":
            return httpx2.create_ssl_context(), proxy  # the certificates httpx2 trusts
        return True, proxy  # no TLS to this server (aiohttp's default, should it redirect)


@dataclass(frozen=True)
class Proxy:
    """The proxy a request to the server goes through, if any (and its credentials)."""

    url: URL | None = None
    auth: aiohttp.BasicAuth | None = None

    @classmethod
    def from_environment(cls, url: URL) -> Proxy:
        """What a session trusting the environment picks for `url`: `<scheme>_PROXY` or
        `ALL_PROXY` unless `NO_PROXY` covers the host, with credentials from the proxy's
        URL or `~/.netrc`. Reads files: call it off the event loop."""
        try:
            proxy, auth = get_env_proxy_for_url(url)
        except LookupError:
            return cls()
        return cls(proxy, auth)


def sdk_headers(client: AsyncOpenAI) -> dict[str, str]:
    """The headers the SDK sends with a chat completion (`_build_headers`): the bearer
    key, then the client's default headers (later ones win, case-insensitively; an
    `Omit` removes one), and the read timeout it announces. (Its internal
    `X-Stainless-Raw-Response` marker is left out; `x-stainless-retry-count` is added
    per attempt.)"""
    merged: dict[str, tuple[str, str]] = {}
    for mapping in ({"Authorization": f"Bearer {client.api_key}"}, client.default_headers):
        for name, value in mapping.items():
            if isinstance(value, openai.Omit):
                merged.pop(name.lower(), None)
            else:
                merged[name.lower()] = (name, value)
    timeout = client.timeout
    read = getattr(timeout, "read", timeout)  # an httpx(2) Timeout, or one number
    if read is not None and "x-stainless-read-timeout" not in merged:
        merged["x-stainless-read-timeout"] = ("x-stainless-read-timeout", str(read))
    return dict(merged.values())


def _timeouts(timeout: Any) -> aiohttp.ClientTimeout:
    """The client's timeout as aiohttp's: httpx2's `read` is per read (`sock_read`), its
    `connect` the TCP/TLS handshake, its `pool` the wait for a free connection."""
    if timeout is None or isinstance(timeout, int | float):
        connect = read = pool = None if timeout is None else float(timeout)
    else:  # an httpx2 (or httpx) Timeout
        connect, read, pool = timeout.connect, timeout.read, timeout.pool
    acquire = None if connect is None or pool is None else connect + pool
    return aiohttp.ClientTimeout(total=None, connect=acquire, sock_connect=connect, sock_read=read)


def _dumps(params: Mapping[str, Any]) -> bytes:
    """The body as the SDK serializes it (`openapi_dumps`)."""
    return json.dumps(params, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def _drain(content: aiohttp.StreamReader) -> None:
    """Read what follows `[DONE]` (the end of the body), briefly, so that the connection
    goes back to the pool; a server that keeps talking loses its connection instead."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            while await content.readany():
                pass
    except (TimeoutError, aiohttp.ClientError, ssl.SSLError, OSError):
        pass  # the answer is complete; only the connection is lost


def _stream_error(error: Any) -> UpstreamError:
    """An `{"error": ...}` chunk (its message is for logs only)."""
    message = error.get("message") if isinstance(error, dict) else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    return UpstreamError("stream", "error event", message=message, body=json.dumps(error))
