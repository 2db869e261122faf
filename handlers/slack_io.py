"""Talking to Slack for one answer: the working indicator, files and history.

`SlackSurface` is what the event handlers share (kept in `deps.extras["slack"]`): the
Web API client, the set of in-flight answer tasks (so shutdown can drain them), an HTTP
session for file downloads and the `SlackDirectory` (a short TTL cache of user and
channel objects, dropped by Slack's events, shared with retrieval's scope checks) that
gives names and locales. The Slack
messages of the answer itself are `handlers.reply.Reply`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import Attachment, HistoryMessage
from bot.gate import FairGate
from handlers import render
from handlers.directory import SlackDirectory
from handlers.reply import StreamPacer

log = logging.getLogger(__name__)

THINKING_STATUS = "is thinking…"
THINKING_REACTION = "eyes"
SLACK_FILE_ORIGIN = "https://files.slack.com:443"
MAX_REDIRECTS = 3
DOWNLOAD_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Admission:
    """How many answers prepare at once: from the message to the LLM request (the claim,
    the lookups, retrieval, the prompt, the reservation), first come, first served.

    That preparation is a few milliseconds of CPU and short waits. Without a limit a burst
    of messages prepares all at once, each step of each answer taking turns on the one
    event loop, so every answer of the burst reaches the model only when the last one
    does, and they all end together again: in a closed loop the burst never spreads out.
    Let in `slots` at a time, in arrival order, the first reach the model first and the
    burst becomes a stream (bench at 20 in flight, twelve runs each way: mean overhead
    p50 47 -> 36 ms on SQLite, 63 -> 52 ms on Postgres; `bench/README.md`). Two places:
    since the reservation left the writer gate on Postgres, preparing takes ~15 ms, and
    two at a time beat four (overhead p50 at 20 in flight, Postgres 42 / 49 / 43 -> 30 /
    28 / 29 ms, SQLite 45 / 37 / 28 -> 33 / 24 / 38 ms, back to back) with answers/s at 200
    in flight unchanged; eight were worse (53-63 ms). Time spent waiting here counts
    toward the working indicator's delay (`start_indicator`).

    An answer leaves when its LLM call starts (`ConversationManager.reply(before_llm=)`),
    when it ends without one, or after `hold_seconds` whatever it is waiting for (a slow
    Slack lookup, a slow knowledge base): a stuck answer never holds the others back
    longer than that.
    """

    SLOTS = 2
    HOLD_SECONDS = 0.25

    def __init__(self, slots: int = SLOTS, hold_seconds: float = HOLD_SECONDS) -> None:
        self.gate = FairGate(slots)
        self.hold_seconds = hold_seconds

    @asynccontextmanager
    async def enter(self) -> AsyncIterator[Callable[[], None]]:
        """Wait for a place; yields `leave`, which gives it up (once; later calls do
        nothing), as does the end of the block."""
        await self.gate.acquire()
        inside = True

        def leave() -> None:
            nonlocal inside
            if inside:
                inside = False
                timer.cancel()
                self.gate.release()

        timer = asyncio.get_running_loop().call_later(self.hold_seconds, leave)
        try:
            yield leave
        finally:
            leave()


@dataclass
class SlackSurface:
    """Shared state of the Slack surface (one per process); see the module docstring."""

    client: AsyncWebClient
    max_image_bytes: int = 5 * 1024 * 1024
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    accepting: bool = True
    #: The origin file downloads may send the token to; None: derived from the client.
    file_origin: str | None = None
    #: Users and channels, briefly cached (shared with retrieval's scope checks).
    directory: SlackDirectory | None = None
    #: One appendStream budget for every answer streaming from this process.
    pacer: StreamPacer = field(default_factory=StreamPacer)
    #: Seconds an answer may keep the user waiting before the working indicator shows.
    indicator_delay: float = 1.0
    #: Answers preparing at once (message to LLM request), first come, first served.
    admission: Admission = field(default_factory=Admission)
    _http: aiohttp.ClientSession | None = None

    @property
    def lookups(self) -> SlackDirectory:
        """The directory (one is made on first use when none was given)."""
        if self.directory is None:
            self.directory = SlackDirectory(self.client)
        return self.directory

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

    # --- names (the directory's short TTL cache) -------------------------------------

    async def user_name(self, user_id: str) -> str | None:
        user = await self._lookup(self.lookups.user, user_id)
        profile = user.get("profile") or {}
        name = profile.get("display_name") or user.get("real_name") or user.get("name")
        return str(name) if name else None

    async def user_locale(self, user_id: str) -> str | None:
        """The user's Slack locale (`fr-FR`), fetched with their name; None if unknown."""
        locale = (await self._lookup(self.lookups.user, user_id)).get("locale")
        return str(locale) if locale else None

    async def channel_name(self, channel_id: str) -> str | None:
        channel = await self._lookup(self.lookups.channel, channel_id)
        return f"#{channel['name']}" if channel.get("name") else None

    async def _lookup(
        self, get: Callable[[str], Awaitable[Mapping[str, Any]]], key: str
    ) -> Mapping[str, Any]:
        """A directory object, or an empty one when Slack cannot say (a name is optional)."""
        try:
            return await get(key)
        except (SlackApiError, aiohttp.ClientError, TimeoutError, KeyError, TypeError) as exc:
            log.info("Slack lookup of %s failed: %s", key, type(exc).__name__)
            return {}

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
        self, channel: str, thread_ts: str, ts: str, is_dm: bool, *, waited: float = 0.0
    ) -> Indicator:
        """Show that Candor is working: assistant status in DM threads, else a reaction.

        Shown only once the answer has kept the user waiting `indicator_delay` seconds
        with nothing on screen (`waited`: seconds since the message arrived, spent before
        this call, e.g. queued for admission): an answer whose text starts streaming
        sooner needs no indicator (and saves Slack two calls). `indicator_delay` 0 shows
        it at once.
        """
        indicator = Indicator(self.client, channel, ts, thread_ts=thread_ts, is_dm=is_dm)
        left = self.indicator_delay - waited
        if left <= 0:
            await indicator.show()
        else:
            indicator.show_after(left)
        return indicator


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
    thread_ts: str = ""
    is_dm: bool = False
    status: bool = False
    reaction: bool = False
    _pending: asyncio.Task[None] | None = field(default=None, repr=False)
    _showing: bool = field(default=False, repr=False)

    async def show(self) -> None:
        """Put the indicator up now (Slack refusing it is not an error)."""
        self._showing = True
        if self.is_dm:
            try:
                await self.client.assistant_threads_setStatus(
                    channel_id=self.channel, thread_ts=self.thread_ts, status=THINKING_STATUS
                )
                self.status = True
                return
            except SlackApiError:
                pass  # not an assistant thread; a reaction works everywhere
        try:
            await self.client.reactions_add(
                channel=self.channel, timestamp=self.ts, name=THINKING_REACTION
            )
            self.reaction = True
        except SlackApiError:
            pass
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("Could not show the indicator: %s", type(exc).__name__)

    def show_after(self, seconds: float) -> None:
        """Put the indicator up in `seconds`, unless the answer shows up first."""

        async def later() -> None:
            await asyncio.sleep(seconds)
            await self.show()

        self._pending = asyncio.create_task(later())

    def answer_showing(self) -> None:
        """The answer's text is on screen: an indicator not yet up is not needed."""
        if self._pending is not None and not self._showing:
            self._pending.cancel()

    async def stop(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            if not self._showing:
                pending.cancel()
            # A call to Slack already under way finishes, so its effect is undone below.
            await asyncio.gather(pending, return_exceptions=True)
        try:
            if self.reaction:
                self.reaction = False
                await self.client.reactions_remove(
                    channel=self.channel, timestamp=self.ts, name=THINKING_REACTION
                )
            if self.status:
                self.status = False
                await self.client.assistant_threads_setStatus(
                    channel_id=self.channel, thread_ts=self.thread_ts or self.ts, status=""
                )
        except SlackApiError as exc:
            log.info("Could not clear the indicator: %s", exc.response.get("error"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("Could not clear the indicator: %s", type(exc).__name__)
