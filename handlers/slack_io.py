"""Talking to Slack for one answer: the working indicator, the reply, files and history.

`SlackSurface` is what the event handlers share (kept in `deps.extras["slack"]`): the
Web API client, the set of in-flight answer tasks (so shutdown can drain them), an HTTP
session for file downloads and a short TTL cache of user and channel names (names only:
nothing a second replica could disagree about in a way that matters).

`Reply` owns the Slack messages of one answer. It streams with `chat.startStream` /
`appendStream` / `stopStream` (markdown as the model wrote it); when Slack refuses the
stream it falls back, for good, to `chat.postMessage` + throttled `chat.update` (mrkdwn).
Text runs through `render.PingGuard` (no live `<!channel>`-style pings) and
`MessageSplitter`, so a long answer becomes several messages instead of failing with
`msg_too_long`. Each way an answer can end has one method: `finish`, `fail`, `cut_off`.

Slack's back-pressure is part of the job: a `ratelimited` write is tried again after its
`Retry-After` while later deltas are buffered; a stream that still fails (the message was
deleted, the stream closed) is finished with `chat.update`, or with `chat.postMessage`
when the message is gone, and `finish` sends whatever the stream never got. What Slack
still refuses leaves as `bot.errors.DeliveryFailed`, so the core never mistakes it for an
LLM failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import Answer, Attachment, HistoryMessage
from bot.errors import DeliveryFailed
from handlers import render

log = logging.getLogger(__name__)

THINKING_STATUS = "is thinking…"
THINKING_REACTION = "eyes"
NAME_TTL_SECONDS = 300.0
NAME_CACHE_MAX = 5_000
SLACK_FILE_ORIGIN = "https://files.slack.com:443"
MAX_REDIRECTS = 3
DOWNLOAD_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass
class SlackSurface:
    """Shared state of the Slack surface (one per process); see the module docstring."""

    client: AsyncWebClient
    max_image_bytes: int = 5 * 1024 * 1024
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    accepting: bool = True
    #: The origin file downloads may send the token to; None: derived from the client.
    file_origin: str | None = None
    _names: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    _http: aiohttp.ClientSession | None = None

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run `work` in the background, tracked for shutdown; None once draining."""
        if not self.accepting:
            work.close()
            return None
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (a deadline, not a cancel scope)
        """Wait until no answer is in flight (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        for _ in range(3):  # let listeners Bolt just scheduled spawn their task
            await asyncio.sleep(0)
        while self.tasks:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self.tasks)} answers still in flight")
            await asyncio.wait(set(self.tasks), timeout=left)
            await asyncio.sleep(0)

    async def drain(self, grace_seconds: float) -> int:
        """Stop taking work, let answers finish for `grace_seconds`, cut off the rest."""
        self.accepting = False
        pending = set(self.tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- names (short TTL cache) -----------------------------------------------------

    async def user_name(self, user_id: str) -> str | None:
        async def fetch() -> str | None:
            user = (await self.client.users_info(user=user_id))["user"]
            profile = user.get("profile") or {}
            name = profile.get("display_name") or user.get("real_name") or user.get("name")
            return str(name) if name else None

        return await self._cached(f"u:{user_id}", fetch)

    async def channel_name(self, channel_id: str) -> str | None:
        async def fetch() -> str | None:
            channel = (await self.client.conversations_info(channel=channel_id))["channel"]
            return f"#{channel['name']}" if channel.get("name") else None

        return await self._cached(f"c:{channel_id}", fetch)

    async def _cached(self, key: str, fetch: Any) -> str | None:
        now = time.monotonic()
        hit = self._names.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            value: str | None = await fetch()
        except (SlackApiError, KeyError, TypeError):
            value = None
        if len(self._names) >= NAME_CACHE_MAX:
            self._names.clear()  # crude, but bounded; names are cheap to fetch again
        self._names[key] = (now + NAME_TTL_SECONDS, value)
        return value

    # --- files and history -----------------------------------------------------------

    async def attachments(self, files: list[dict[str, Any]]) -> tuple[Attachment, ...]:
        """Download the images among `files` with the bot token (others are skipped)."""
        out: list[Attachment] = []
        for f in files:
            mimetype = str(f.get("mimetype") or "")
            if not mimetype.startswith("image/"):
                continue
            out.append(await self._download(f, mimetype))
        return tuple(out)

    def allowed_file_origin(self) -> str:
        """The one origin that may receive the bot token with a file download."""
        return self.file_origin or slack_file_origin(str(self.client.base_url))

    async def _download(
        self, f: dict[str, Any], mimetype: str, limit: int | None = None
    ) -> Attachment:
        """Download one file whole, or say in one sentence why not.

        The bot token goes only to Slack's file origin (see `slack_file_origin`): a file object
        naming any other host, an external file, or a redirect off that origin is refused
        without a request carrying the token. The body is read to its end or to `limit`,
        and must match the `size` Slack gave, so a file never arrives cut short.
        """
        name = str(f.get("name") or f.get("title") or "image")
        limit = limit or self.max_image_bytes
        failed = Attachment(name, mimetype, None, f"I could not download {name} from Slack.")
        if f.get("is_external"):
            return Attachment(
                name, mimetype, None, f"I skipped {name}: it is stored outside Slack."
            )
        size = int(f.get("size") or 0)
        if size > limit:
            return _too_big(name, mimetype, size, limit)
        url = str(f.get("url_private_download") or f.get("url_private") or "")
        allowed = self.allowed_file_origin()
        if not url or _origin(url) != allowed:
            log.warning("Not downloading %s: its URL is not on Slack's file origin", name)
            return failed
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        headers = {"Authorization": f"Bearer {self.client.token}"}
        data = bytearray()
        try:
            for _ in range(MAX_REDIRECTS + 1):
                # Redirects are followed here, not by aiohttp, so the token never leaves
                # the allowed origin.
                async with self._http.get(url, headers=headers, allow_redirects=False) as response:
                    if response.status in _REDIRECTS:
                        url = urljoin(url, response.headers.get("Location", ""))
                        if _origin(url) != allowed:
                            log.warning("Download of %s redirected off Slack; not followed", name)
                            return failed
                        continue
                    # Without a valid token Slack answers 200 with its HTML login page.
                    if response.status != 200 or response.content_type == "text/html":
                        log.warning("Download of %s failed: HTTP %s", name, response.status)
                        return failed
                    if (response.content_length or 0) > limit:
                        return _too_big(name, mimetype, response.content_length or 0, limit)
                    async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK):
                        data += chunk
                        if len(data) > limit:
                            return _too_big(name, mimetype, None, limit)
                    break
            else:
                log.warning("Download of %s failed: too many redirects", name)
                return failed
        except (aiohttp.ClientError, TimeoutError):
            log.warning("Download of %s failed", name, exc_info=True)
            return failed
        if size and len(data) != size:
            log.warning("Download of %s incomplete: %d of %d bytes", name, len(data), size)
            return Attachment(
                name, mimetype, None, f"I could not download all of {name} from Slack."
            )
        return Attachment(name, mimetype, bytes(data))

    async def download(self, f: dict[str, Any], *, limit: int) -> Attachment:
        """Download any file on a message with the bot token, up to `limit` bytes."""
        return await self._download(f, str(f.get("mimetype") or ""), limit)

    async def thread_history(
        self,
        channel: str,
        thread_ts: str,
        current_ts: str,
        bot_user_id: str | None,
        bot_id: str | None,
    ) -> tuple[HistoryMessage, ...]:
        """Rebuild a thread from `conversations.replies` when the database has none."""
        try:
            response = await self.client.conversations_replies(
                channel=channel, ts=thread_ts, limit=200
            )
        except SlackApiError as exc:
            log.warning("conversations.replies failed: %s", exc.response.get("error"))
            return ()
        history: list[HistoryMessage] = []
        for m in response.get("messages") or []:
            if m.get("ts") == current_ts or m.get("subtype") not in (
                None,
                "file_share",
                "thread_broadcast",
            ):
                continue
            text = strip_mention(str(m.get("text") or ""), bot_user_id)
            if not text:
                continue
            mine = (bot_user_id and m.get("user") == bot_user_id) or (
                bot_id and m.get("bot_id") == bot_id
            )
            if mine:
                history.append(HistoryMessage("assistant", text))
            elif not m.get("bot_id"):
                history.append(HistoryMessage("user", text))
        return tuple(history)

    # --- indicator -------------------------------------------------------------------

    async def start_indicator(
        self, channel: str, thread_ts: str, ts: str, is_dm: bool
    ) -> Indicator:
        """Show that Candor is working: assistant status in DM threads, else a reaction."""
        if is_dm:
            try:
                await self.client.assistant_threads_setStatus(
                    channel_id=channel, thread_ts=thread_ts, status=THINKING_STATUS
                )
                return Indicator(self.client, channel, thread_ts, status=True)
            except SlackApiError:
                pass  # not an assistant thread; a reaction works everywhere
        try:
            await self.client.reactions_add(channel=channel, timestamp=ts, name=THINKING_REACTION)
            return Indicator(self.client, channel, ts, reaction=True)
        except SlackApiError:
            return Indicator(self.client, channel, ts)


def _too_big(name: str, mimetype: str, size: int | None, limit: int) -> Attachment:
    """`size` None: the download went past `limit` before its size was known."""
    if size:
        message = f"I skipped {name}: it is {render.megabytes(size)} and the limit is {render.megabytes(limit)}."
    else:
        message = f"I skipped {name}: it is over the limit of {render.megabytes(limit)}."
    return Attachment(name, mimetype, None, message)


def slack_file_origin(api_url: str) -> str:
    """Where file downloads may carry the bot token, from the Web API's URL.

    Slack's own API (`https://slack.com/api/`) serves files from `https://files.slack.com`;
    any other `SLACK_API_URL` (a proxy, a test server) serves them from its own origin.
    """
    parts = urlsplit(api_url)
    if parts.scheme == "https" and parts.hostname == "slack.com":
        return SLACK_FILE_ORIGIN
    return _origin(api_url) or SLACK_FILE_ORIGIN


def _origin(url: str) -> str | None:
    """`scheme://host:port` with the port spelled out, or None for a URL without one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{scheme}://{parts.hostname.lower()}:{port or (443 if scheme == 'https' else 80)}"


def strip_mention(text: str, bot_user_id: str | None) -> str:
    if bot_user_id:
        text = text.replace(f"<@{bot_user_id}>", "")
    return text.strip()


@dataclass
class Indicator:
    """The working indicator of one answer; `stop()` is safe to call in every path."""

    client: AsyncWebClient
    channel: str
    ts: str
    status: bool = False
    reaction: bool = False

    async def stop(self) -> None:
        try:
            if self.reaction:
                self.reaction = False
                await self.client.reactions_remove(
                    channel=self.channel, timestamp=self.ts, name=THINKING_REACTION
                )
            if self.status:
                self.status = False
                await self.client.assistant_threads_setStatus(
                    channel_id=self.channel, thread_ts=self.ts, status=""
                )
        except SlackApiError as exc:
            log.info("Could not clear the indicator: %s", exc.response.get("error"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("Could not clear the indicator: %s", type(exc).__name__)


@dataclass
class _Segment:
    """One Slack message of an answer."""

    ts: str | None = None
    text: str = ""  # markdown of this message so far (pings already defused)
    sent: int = 0  # characters of `text` Slack has
    streaming: bool = False


#: Slack errors saying the message cannot be edited any more: post the rest anew.
_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
#: What a Slack call can fail with besides an error answer (network, timeouts).
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


def _error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or "unknown_error")


def _retry_after(exc: SlackApiError, default: float = 1.0) -> float:
    headers: Any = getattr(exc.response, "headers", None) or {}
    for key, value in dict(headers).items():
        if str(key).lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return default
    return default


@contextmanager
def _delivery() -> Iterator[None]:
    """Turn what Slack still refused into `DeliveryFailed`, the core's type for it."""
    try:
        yield
    except SlackApiError as exc:
        error = _error(exc)
        raise DeliveryFailed(
            f"Slack answered {error}", code=error, retry_after=_retry_after(exc)
        ) from None
    except _TRANSPORT_ERRORS as exc:
        raise DeliveryFailed(type(exc).__name__, code="connection") from None


class Reply:
    """The Slack messages of one answer; see the module docstring."""

    STREAM_EVERY = (0.3, 120)  # seconds, characters between appendStream calls
    UPDATE_EVERY = (1.0, 300)  # seconds, characters between chat.update calls
    #: `ratelimited` answers in a row Candor waits out (after the client's own retries)
    #: before it stops streaming and delivers the answer with chat.update / postMessage.
    RATE_LIMIT_RETRIES = 3
    #: Longest Retry-After honoured for one wait, in seconds.
    MAX_RETRY_AFTER = 30.0

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str,
        team_id: str,
        user_id: str,
        stream: bool = True,
        splitter: render.MessageSplitter | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.team_id = team_id
        self.user_id = user_id
        self.stream = stream
        self.splitter = splitter or render.MessageSplitter()
        self.guard = render.PingGuard()
        self.segment = _Segment()
        self.fed = 0  # characters of the answer handed to `delta` (or `finish`)
        self.posted: list[str] = []
        self._last_write = 0.0
        self._sleep = sleep
        self._retry_at = 0.0  # monotonic time before which Slack asked us not to write
        self._rate_limited = 0

    @property
    def started(self) -> bool:
        return self.segment.ts is not None or bool(self.posted)

    async def delta(self, text: str) -> None:
        """Take a piece of the answer as the model writes it; raises `DeliveryFailed`."""
        self.fed += len(text)
        with _delivery():
            await self._take(self.guard.feed(text))
            if time.monotonic() < self._retry_at:
                return  # Slack asked us to wait: keep buffering until then
            seconds, chars = self.STREAM_EVERY if self.stream else self.UPDATE_EVERY
            unsent = len(self.segment.text) - self.segment.sent
            if unsent and (unsent >= chars or time.monotonic() - self._last_write >= seconds):
                await self._write()

    async def finish(self, answer: Answer) -> None:
        """Write the rest of the answer and its footer.

        The rest is whatever `delta` did not get: nothing after a normal stream, the whole
        text when nothing was streamed, the tail when Slack failed mid-answer.
        """
        with _delivery():
            rest = answer.text[self.fed :] if (self.fed or answer.text) else render.EMPTY_ANSWER
            self.fed += len(rest)
            await self._take(self.guard.feed(rest) + self.guard.flush())
            await self._close_segment(answer)

    async def fail(self, sentence: str) -> None:
        """End with `sentence` (a user-facing error), after any text already shown."""
        with _delivery():
            await self._take(self.guard.flush())
            if self.segment.text.strip():
                self.segment.text += f"\n\n{sentence}"
                await self._close_segment(None)
            else:
                await self._post(sentence)

    async def cut_off(self) -> None:
        """Candor is shutting down mid-answer: say so where the answer stops."""
        with _delivery():
            await self._take(self.guard.flush())
            self.segment.text += (
                f"\n\n{render.CUT_OFF}" if self.segment.text.strip() else render.CUT_OFF
            )
            await self._close_segment(None)

    # --- internals -------------------------------------------------------------------

    async def _take(self, text: str) -> None:
        """Add (already defused) text to the current message, closing full messages."""
        for item in self.splitter.feed(text):
            if isinstance(item, render.Break):
                await self._close_segment(None)
            else:
                self.segment.text += item

    async def _write(self) -> None:
        self._last_write = time.monotonic()
        seg = self.segment
        if self.stream and seg.ts is None:
            await self._start_stream()
        if seg.streaming and seg.ts is not None:
            chunk = seg.text[seg.sent :]
            try:
                await self.client.chat_appendStream(
                    channel=self.channel, ts=seg.ts, markdown_text=chunk
                )
            except SlackApiError as exc:
                if not self._wait_later(exc):
                    self._stop_streaming(exc)
                    await self._write_plain(render.to_mrkdwn(seg.text), final=False)
                return
            seg.sent += len(chunk)
            self._rate_limited = 0
            return
        await self._write_plain(render.to_mrkdwn(seg.text), final=False)

    async def _start_stream(self) -> None:
        seg = self.segment
        try:
            response = await self.client.chat_startStream(
                channel=self.channel,
                thread_ts=self.thread_ts,
                recipient_team_id=self.team_id,
                recipient_user_id=self.user_id,
            )
        except SlackApiError as exc:
            log.info("Streaming refused (%s); posting and updating instead.", _error(exc))
            self.stream = False
            return
        seg.ts = str(response["ts"])
        seg.streaming = True

    async def _close_segment(self, answer: Answer | None) -> None:
        seg = self.segment
        if not seg.text.strip() and answer is None:
            self.segment = _Segment()
            return
        await self._wait()
        if self.stream and seg.ts is None:
            await self._start_stream()
        streamed = False
        while seg.streaming and seg.ts is not None:
            rest = render.defuse_pings(seg.text[seg.sent :])
            blocks = render.footer_blocks(answer) if answer is not None else None
            try:
                await self.client.chat_stopStream(
                    channel=self.channel, ts=seg.ts, markdown_text=rest or None, blocks=blocks
                )
            except SlackApiError as exc:
                if self._wait_later(exc):
                    await self._wait()
                    continue
                self._stop_streaming(exc)
                break
            seg.streaming = False
            seg.sent = len(seg.text)
            self._rate_limited = 0
            streamed = True
        if not streamed:
            text = render.to_mrkdwn(seg.text)
            if answer is not None:
                text = f"{text}\n\n{render.footer_text(answer)}"
            await self._write_plain(text, final=True)
        if seg.ts:
            self.posted.append(seg.ts)
        self.segment = _Segment()

    async def _write_plain(self, text: str, *, final: bool) -> None:
        """Show `text` as the current message: edit it, or post it when it is gone.

        Mid-answer (`final=False`) a rate limit only postpones the edit to a later delta.
        """
        seg = self.segment
        while seg.ts is not None:
            try:
                await self.client.chat_update(
                    channel=self.channel, ts=seg.ts, text=render.defuse_pings(text)
                )
            except SlackApiError as exc:
                if self._wait_later(exc):
                    if not final:
                        return
                    await self._wait()
                    continue
                if _error(exc) not in _GONE:
                    raise
                log.info("The answer's message is gone (%s); posting it anew.", _error(exc))
                seg.ts = None
                break
            seg.sent = len(seg.text)
            self._rate_limited = 0
            return
        seg.ts = await self._post(text)
        seg.sent = len(seg.text)

    def _stop_streaming(self, exc: SlackApiError) -> None:
        """Streaming this answer failed for good: deliver the rest another way."""
        error = _error(exc)
        log.info("Streaming failed (%s); finishing with chat.update / chat.postMessage.", error)
        self.stream = False
        self.segment.streaming = False
        self.segment.sent = 0  # the plain path sends the whole message text
        if error in _GONE:
            self.segment.ts = None

    def _wait_later(self, exc: SlackApiError) -> bool:
        """A `ratelimited` answer with retries left: note when to try again."""
        if _error(exc) != "ratelimited" or self._rate_limited >= self.RATE_LIMIT_RETRIES:
            return False
        self._rate_limited += 1
        wait = min(_retry_after(exc), self.MAX_RETRY_AFTER)
        self._retry_at = time.monotonic() + wait
        log.info("Slack rate limited the answer; retrying in %.1f s.", wait)
        return True

    async def _wait(self) -> None:
        delay = self._retry_at - time.monotonic()
        self._retry_at = 0.0
        if delay > 0:
            await self._sleep(delay)

    async def _post(self, text: str) -> str:
        while True:
            try:
                response = await self.client.chat_postMessage(
                    channel=self.channel,
                    thread_ts=self.thread_ts,
                    text=render.defuse_pings(text),
                    unfurl_links=False,
                )
            except SlackApiError as exc:
                if not self._wait_later(exc):
                    raise
                await self._wait()
                continue
            self._rate_limited = 0
            return str(response["ts"])
