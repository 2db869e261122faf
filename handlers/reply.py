"""The Slack messages of one answer, streamed.

`Reply` owns the Slack messages of one answer. It streams with `chat.startStream` /
`appendStream` / `stopStream` (markdown as the model wrote it; the first text opens the
stream, so a short answer takes two calls); when Slack refuses the stream it falls back,
for good, to `chat.postMessage` + throttled `chat.update` (mrkdwn). The answers streaming
at once share one `StreamPacer`, which spaces appends out as their number grows.
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
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import Answer
from bot.errors import DeliveryFailed
from handlers import render

log = logging.getLogger(__name__)


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


class StreamPacer:
    """One `chat.appendStream` budget shared by every answer streaming at once.

    Alone, an answer appends every `Reply.STREAM_EVERY`; with many answers streaming,
    each waits `streams / appends_per_second` between appends instead, so the process
    makes about `appends_per_second` appends however many answers are in flight (Slack
    rate-limits the method per workspace, and every call costs CPU that the other
    answers wait for). The first text always goes out at once with `chat.startStream`,
    and the rest with `chat.stopStream`, so under load an answer shows its start early
    and grows in fewer, larger steps.
    """

    #: Characters that force an append before the paced interval is up.
    PACED_CHARS = 4000

    def __init__(self, appends_per_second: float = 50.0) -> None:
        self.appends_per_second = appends_per_second
        self._streams: weakref.WeakSet[Reply] = weakref.WeakSet()

    @property
    def streaming(self) -> int:
        return len(self._streams)

    def every(self, alone: tuple[float, int]) -> tuple[float, int]:
        """(seconds, characters) between one answer's appends right now."""
        seconds = len(self._streams) / self.appends_per_second
        return alone if seconds <= alone[0] else (seconds, max(alone[1], self.PACED_CHARS))

    def opened(self, reply: Reply) -> None:
        self._streams.add(reply)

    def closed(self, reply: Reply) -> None:
        self._streams.discard(reply)


class Reply:
    """The Slack messages of one answer; see the module docstring."""

    STREAM_EVERY = (0.3, 120)  # seconds, characters between appendStream calls (alone)
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
        pacer: StreamPacer | None = None,
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
        self.pacer = pacer

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
            if not self.stream:
                seconds, chars = self.UPDATE_EVERY
            elif self.pacer is not None:
                seconds, chars = self.pacer.every(self.STREAM_EVERY)
            else:
                seconds, chars = self.STREAM_EVERY
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
        if self.stream and seg.ts is None and await self._start_stream():
            return  # the text so far went with chat.startStream
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

    async def _start_stream(self) -> bool:
        """Open the stream with the message's text so far; False: Slack refused streaming."""
        seg = self.segment
        text = seg.text
        try:
            response = await self.client.chat_startStream(
                channel=self.channel,
                thread_ts=self.thread_ts,
                recipient_team_id=self.team_id,
                recipient_user_id=self.user_id,
                markdown_text=text or None,
            )
        except SlackApiError as exc:
            log.info("Streaming refused (%s); posting and updating instead.", _error(exc))
            self.stream = False
            return False
        seg.ts = str(response["ts"])
        seg.streaming = True
        seg.sent = len(text)
        if self.pacer is not None:
            self.pacer.opened(self)
        return True

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
            self._streaming_ended(seg)
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
        self._streaming_ended(self.segment)
        self.segment.sent = 0  # the plain path sends the whole message text
        if error in _GONE:
            self.segment.ts = None

    def _streaming_ended(self, seg: _Segment) -> None:
        seg.streaming = False
        if self.pacer is not None:
            self.pacer.closed(self)

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
