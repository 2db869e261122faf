"""A fake Slack Web API: real HTTP (and a Socket Mode WebSocket) on loopback, port 0.

Point the real `AsyncWebClient(base_url=fake.url)` at it and assert on what a user would
see, not on mocks. Every call is recorded in `calls` (method, parsed body, headers) and
the server keeps a tiny model of the workspace's messages, so `messages()` returns what a
person would read in the channel: posted, updated, streamed and ephemeral messages.

    async with FakeSlackServer() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
        ...
        await slack.wait_for("chat.postMessage", count=1)
        assert slack.messages("C1")[0].text == "Hello"

Scripting:

- `fail_next("chat.postMessage", "msg_too_long", times=1)`: the next call(s) answer
  `{"ok": false, "error": ...}` like Slack does.
- `rate_limit_next("chat.update", retry_after=1)`: HTTP 429 with `Retry-After`.
- `refuse_streaming("feature_not_enabled")`: every `chat.startStream` fails.
- `delete_message_before("chat.appendStream", call=2)`: just before that call, the
  message it targets is deleted, as a person deleting it mid-stream would.
- `set_replies(channel, thread_ts, [...])`: what `conversations.replies` returns
  (default: the messages this fake recorded in that thread).
- `set_user(user_id, is_admin=True, ...)`: `users.info`; unknown users are plain members.
- `set_members(channel, [...])`, `set_user_channels(user, [...])`: membership lookups.
- `set_channel(channel, is_ext_shared=True, ...)`: fields `conversations.info` adds to
  its channel object (privacy follows the ID by default: `G…` private, `D…` a DM).
- `add_file(name, data, mimetype)`: a Slack file object whose `url_private_download`
  is served by this fake (it insists on `Authorization: Bearer xoxb-...`); every
  download is recorded as method `"file.download"` with its headers. `url=`,
  `redirect_to=` and extra fields script foreign hosts, redirects and external files.
- `response_url()`: a URL for slash commands / block actions; posts to it are recorded as
  method `"response_url"` and show up in `messages()` (ephemeral unless in_channel).
- `max_text_chars`: texts longer than this fail with `msg_too_long` (Slack: 40,000).

Socket Mode: `apps.connections.open` returns `ws_url`; once a client connects,
`await send_socket_envelope("events_api", payload)` delivers an envelope and
`await wait_for_ack(envelope_id)` returns the client's acknowledgement.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T1"


@dataclass
class SlackCall:
    """One Web API request as the fake received it."""

    method: str
    body: dict[str, Any]
    headers: dict[str, str]
    #: The `error` Slack answered with (`ok: false` or 429), None when it succeeded.
    error: str | None = None
    #: The client's (host, port): calls over one kept-alive connection share it.
    peer: Any = None

    def get(self, key: str, default: Any = None) -> Any:
        return self.body.get(key, default)


@dataclass
class SlackMessage:
    """A message as a person sees it in Slack."""

    channel: str
    ts: str
    text: str = ""
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    user: str = BOT_USER_ID
    bot_id: str | None = BOT_ID
    ephemeral_to: str | None = None
    streaming: bool = False
    edits: int = 0

    @property
    def visible_text(self) -> str:
        """The text plus every text inside its blocks, as a reader would see them."""
        parts = [self.text] if self.text else []
        parts.extend(_block_texts(self.blocks))
        return "\n".join(parts)

    def as_reply(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "type": "message",
            "ts": self.ts,
            "text": self.text,
            "user": self.user,
        }
        if self.bot_id:
            row["bot_id"] = self.bot_id
        if self.thread_ts:
            row["thread_ts"] = self.thread_ts
        return row


def _block_texts(blocks: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        text = block.get("text")
        if isinstance(text, dict) and text.get("text"):
            out.append(str(text["text"]))
        elif isinstance(text, str):
            out.append(text)
        for element in block.get("elements", []) or []:
            if isinstance(element, dict):
                inner = element.get("text")
                if isinstance(inner, dict) and inner.get("text"):
                    out.append(str(inner["text"]))
                elif isinstance(inner, str):
                    out.append(inner)
        for item in block.get("fields", []) or []:
            if isinstance(item, dict) and item.get("text"):
                out.append(str(item["text"]))
    return out


def _chunk_text(body: dict[str, Any]) -> str:
    text = str(body.get("markdown_text") or "")
    chunks = body.get("chunks") or []
    if isinstance(chunks, str):
        chunks = json.loads(chunks)
    for chunk in chunks:
        if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
            text += str(chunk.get("text", ""))
    return text


def _blocks(value: Any) -> list[dict[str, Any]]:
    if not value:
        return []
    if isinstance(value, str):
        loaded = json.loads(value)
        return list(loaded) if isinstance(loaded, list) else []
    return list(value)


class FakeSlackServer:
    """See the module docstring."""

    def __init__(self, *, max_text_chars: int = 40_000) -> None:
        self.max_text_chars = max_text_chars
        self.calls: list[SlackCall] = []
        self.socket_acks: dict[str, dict[str, Any]] = {}
        self._messages: dict[tuple[str, str], SlackMessage] = {}
        self._failures: dict[str, list[str]] = defaultdict(list)
        self._rate_limits: dict[str, list[int]] = defaultdict(list)
        self._stream_refusal: str | None = None
        self._deletions: dict[str, int] = {}
        self._replies: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._members: dict[str, list[str]] = {}
        self._user_channels: dict[str, list[str]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._files: dict[str, tuple[bytes, str]] = {}
        self._redirects: dict[str, str] = {}
        self._ts = itertools.count(1)
        self._changed = asyncio.Event()
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_connected = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base = ""
        self.url = ""
        self.ws_url = ""
        self._handlers: dict[str, Callable[[dict[str, Any], dict[str, str]], web.Response]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "chat.getPermalink": self._permalink,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "conversations.members": self._conversations_members,
            "conversations.info": self._conversations_info,
            "conversations.open": self._conversations_open,
            "users.conversations": self._users_conversations,
            "users.info": self._users_info,
            "views.publish": self._view,
            "views.open": self._view,
            "views.update": self._view,
            "views.push": self._view,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "files.upload": self._ok,
            "reactions.add": self._ok,
            "reactions.remove": self._ok,
            "assistant.threads.setStatus": self._ok,
            "assistant.threads.setSuggestedPrompts": self._ok,
            "assistant.threads.setTitle": self._ok,
        }

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> FakeSlackServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_get("/files/{file_id}/{name}", self._download)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/response/{rid}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/api/"
        self.ws_url = f"ws://127.0.0.1:{port}/socket"
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeSlackServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- scripting -------------------------------------------------------------------

    def fail_next(self, method: str, error: str, *, times: int = 1) -> None:
        self._failures[method].extend([error] * times)

    def rate_limit_next(self, method: str, *, retry_after: int = 1, times: int = 1) -> None:
        self._rate_limits[method].extend([retry_after] * times)

    def delete_message_before(self, method: str, *, call: int = 1) -> None:
        """Delete the message the `call`-th `method` call targets, just before it runs."""
        self._deletions[method] = call

    def refuse_streaming(self, error: str | None = "feature_not_enabled") -> None:
        """Make every `chat.startStream` fail with `error` (None accepts again)."""
        self._stream_refusal = error

    def set_history(self, channel: str, messages: list[dict[str, Any]]) -> None:
        """Script `conversations.history` of `channel` (newest first, as Slack returns it)."""
        self._history[channel] = messages

    def set_replies(self, channel: str, thread_ts: str, messages: list[dict[str, Any]]) -> None:
        self._replies[(channel, thread_ts)] = messages

    def set_user(self, user_id: str, **fields: Any) -> None:
        user = self._default_user(user_id)
        profile = fields.pop("profile", {})
        user.update(fields)
        user["profile"].update(profile)
        self._users[user_id] = user

    def set_members(self, channel: str, users: list[str]) -> None:
        self._members[channel] = users

    def set_user_channels(self, user_id: str, channels: list[str]) -> None:
        self._user_channels[user_id] = channels

    def set_channel(self, channel: str, **fields: Any) -> None:
        self._channels.setdefault(channel, {}).update(fields)

    def add_file(
        self,
        name: str,
        data: bytes,
        mimetype: str = "image/png",
        *,
        file_id: str | None = None,
        url: str | None = None,
        redirect_to: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Store a file and return the Slack file object a message would carry.

        `url` makes the object point elsewhere (say, another server); `redirect_to` makes
        this fake answer its download with a 302 to that location; `fields` are set on the
        object as given (`is_external=True`, a `size` that does not match, ...).
        """
        fid = file_id or f"F{uuid.uuid4().hex[:8].upper()}"
        self._files[fid] = (data, mimetype)
        if redirect_to is not None:
            self._redirects[fid] = redirect_to
        url = url or f"{self.base}/files/{fid}/{name}"
        return {
            "id": fid,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": mimetype.rsplit("/", 1)[-1],
            "size": len(data),
            "url_private": url,
            "url_private_download": url,
            **fields,
        }

    def response_url(self) -> str:
        return f"{self.base}/response/{uuid.uuid4().hex[:12]}"

    # --- inspection ------------------------------------------------------------------

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    def errors(self) -> list[tuple[str, str]]:
        """(method, error) of every call the fake refused, scripted failures included."""
        return [(c.method, c.error) for c in self.calls if c.error is not None]

    def messages(
        self, channel: str | None = None, *, thread_ts: str | None = None
    ) -> list[SlackMessage]:
        """Messages a person would see, oldest first (ephemeral ones included)."""
        rows = [
            m
            for m in self._messages.values()
            if (channel is None or m.channel == channel)
            and (thread_ts is None or m.thread_ts == thread_ts)
        ]
        return sorted(rows, key=lambda m: float(m.ts))

    def texts(self, channel: str | None = None) -> list[str]:
        return [m.visible_text for m in self.messages(channel)]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[SlackCall]:  # noqa: ASYNC109
        """Wait until `method` was called at least `count` times; return those calls."""
        await self.wait_until(
            lambda: len(self.calls_to(method)) >= count, timeout, what=f"{count} x {method}"
        )
        return self.calls_to(method)

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
        *,
        what: str = "condition",
    ) -> None:
        """Poll `predicate` whenever a call arrives, up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [c.method for c in self.calls]
                raise AssertionError(f"timed out waiting for {what}; calls so far: {seen}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.05))
            except TimeoutError:
                pass

    # --- Socket Mode -----------------------------------------------------------------

    async def wait_for_socket(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await asyncio.wait_for(self._socket_connected.wait(), timeout)

    async def send_socket_envelope(
        self, envelope_type: str, payload: dict[str, Any], *, retry_attempt: int = 0
    ) -> str:
        """Deliver one Socket Mode envelope to the connected client; returns its id."""
        await self.wait_for_socket()
        envelope_id = uuid.uuid4().hex
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": envelope_type,
                "payload": payload,
                "accepts_response_payload": envelope_type != "events_api",
                "retry_attempt": retry_attempt,
                "retry_reason": "",
            }
        )
        return envelope_id

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        await self.wait_until(lambda: envelope_id in self.socket_acks, timeout, what="socket ack")
        return self.socket_acks[envelope_id]

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {"host": "fake"}})
        self._socket_connected.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                if "envelope_id" in data:
                    self.socket_acks[str(data["envelope_id"])] = data
                    self._changed.set()
        self._sockets.remove(ws)
        return ws

    # --- HTTP plumbing ---------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body: dict[str, Any] = dict(request.query)
        raw = await request.read()
        if raw:
            if request.content_type == "application/json":
                body.update(json.loads(raw))
            elif request.content_type.startswith("multipart/"):
                pass
            else:
                body.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        headers = {k: v for k, v in request.headers.items()}
        peer = request.transport.get_extra_info("peername") if request.transport else None
        call = SlackCall(method, body, headers, peer=tuple(peer) if peer else None)
        self.calls.append(call)
        try:
            response = self._dispatch(method, body, headers)
            if isinstance(response.body, bytes):
                answer = json.loads(response.body)
                call.error = None if answer.get("ok") else str(answer.get("error"))
            return response
        finally:
            self._changed.set()

    def _dispatch(self, method: str, body: dict[str, Any], headers: dict[str, str]) -> web.Response:
        auth = headers.get("Authorization", "") or ("Bearer " + str(body.get("token", "")))
        if not auth.startswith(("Bearer xoxb-", "Bearer xoxp-", "Bearer xapp-")):
            return _error("not_authed")
        if method in self._deletions:
            self._deletions[method] -= 1
            if self._deletions[method] <= 0:
                del self._deletions[method]
                self._messages.pop((str(body.get("channel")), str(body.get("ts"))), None)
        if self._rate_limits.get(method):
            retry_after = self._rate_limits[method].pop(0)
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(retry_after)},
            )
        if self._failures.get(method):
            return _error(self._failures[method].pop(0))
        handler = self._handlers.get(method)
        if handler is None:
            return _error("unknown_method")
        return handler(body, headers)

    def _next_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"

    def _too_long(self, text: str) -> bool:
        return len(text) > self.max_text_chars

    # --- methods ---------------------------------------------------------------------

    def _ok(self, _body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        return web.json_response({"ok": True})

    def _auth_test(self, _body: dict[str, Any], headers: dict[str, str]) -> web.Response:
        return web.json_response(
            {
                "ok": True,
                "url": "https://fake.slack.com/",
                "team": "Fake Team",
                "user": "candor",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
                "is_enterprise_install": False,
            }
        )

    def _connections_open(self, _body: dict[str, Any], headers: dict[str, str]) -> web.Response:
        if not headers.get("Authorization", "").startswith("Bearer xapp-"):
            return _error("not_allowed_token_type")
        return web.json_response({"ok": True, "url": self.ws_url})

    def _post_message(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        text = str(body.get("text") or "")
        blocks = _blocks(body.get("blocks"))
        if not text and not blocks:
            return _error("no_text")
        if self._too_long(text):
            return _error("msg_too_long")
        channel = str(body["channel"])
        message = SlackMessage(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            thread_ts=body.get("thread_ts") or None,
            blocks=blocks,
        )
        self._messages[(channel, message.ts)] = message
        return web.json_response(
            {"ok": True, "channel": channel, "ts": message.ts, "message": message.as_reply()}
        )

    def _post_ephemeral(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        text = str(body.get("text") or "")
        if self._too_long(text):
            return _error("msg_too_long")
        channel = str(body["channel"])
        message = SlackMessage(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            thread_ts=body.get("thread_ts") or None,
            blocks=_blocks(body.get("blocks")),
            ephemeral_to=str(body.get("user")),
        )
        self._messages[(channel, message.ts)] = message
        return web.json_response({"ok": True, "message_ts": message.ts})

    def _update(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        key = (str(body.get("channel")), str(body.get("ts")))
        message = self._messages.get(key)
        if message is None:
            return _error("message_not_found")
        text = str(body.get("text") or "")
        if self._too_long(text):
            return _error("msg_too_long")
        message.text = text
        if "blocks" in body:
            message.blocks = _blocks(body.get("blocks"))
        message.edits += 1
        return web.json_response({"ok": True, "channel": key[0], "ts": key[1], "text": text})

    def _delete(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        key = (str(body.get("channel")), str(body.get("ts")))
        if self._messages.pop(key, None) is None:
            return _error("message_not_found")
        return web.json_response({"ok": True, "channel": key[0], "ts": key[1]})

    def _start_stream(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        if self._stream_refusal:
            return _error(self._stream_refusal)
        if not body.get("thread_ts"):
            return _error("invalid_arguments")
        channel = str(body["channel"])
        message = SlackMessage(
            channel=channel,
            ts=self._next_ts(),
            text=_chunk_text(body),
            thread_ts=str(body["thread_ts"]),
            streaming=True,
        )
        self._messages[(channel, message.ts)] = message
        return web.json_response({"ok": True, "channel": channel, "ts": message.ts})

    def _append_stream(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        message = self._messages.get((str(body.get("channel")), str(body.get("ts"))))
        if message is None:
            return _error("message_not_found")
        if not message.streaming:
            return _error("message_not_in_streaming_state")
        chunk = _chunk_text(body)
        if len(chunk) > 12_000 or self._too_long(message.text + chunk):
            return _error("msg_too_long")
        message.text += chunk
        return web.json_response({"ok": True, "channel": message.channel, "ts": message.ts})

    def _stop_stream(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        message = self._messages.get((str(body.get("channel")), str(body.get("ts"))))
        if message is None:
            return _error("message_not_found")
        if not message.streaming:
            return _error("message_not_in_streaming_state")
        chunk = _chunk_text(body)
        if self._too_long(message.text + chunk):
            return _error("msg_too_long")
        message.text += chunk
        message.blocks = _blocks(body.get("blocks"))
        message.streaming = False
        return web.json_response({"ok": True, "channel": message.channel, "ts": message.ts})

    def _permalink(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        channel, ts = str(body.get("channel")), str(body.get("message_ts"))
        return web.json_response(
            {
                "ok": True,
                "channel": channel,
                "permalink": f"https://fake.slack.com/archives/{channel}/p{ts.replace('.', '')}",
            }
        )

    def _conversations_replies(
        self, body: dict[str, Any], _headers: dict[str, str]
    ) -> web.Response:
        channel, ts = str(body.get("channel")), str(body.get("ts"))
        scripted = self._replies.get((channel, ts))
        if scripted is None:
            scripted = [
                m.as_reply() for m in self.messages(channel, thread_ts=ts) if not m.ephemeral_to
            ]
        return web.json_response({"ok": True, "messages": scripted, "has_more": False})

    def _conversations_history(
        self, body: dict[str, Any], _headers: dict[str, str]
    ) -> web.Response:
        messages = self._history.get(str(body.get("channel")), [])
        if body.get("oldest"):  # like Slack: only messages after `oldest` (not inclusive)
            oldest = float(str(body["oldest"]))
            messages = [m for m in messages if float(str(m.get("ts", "0"))) > oldest]
        return web.json_response({"ok": True, "messages": messages, "has_more": False})

    def _conversations_members(
        self, body: dict[str, Any], _headers: dict[str, str]
    ) -> web.Response:
        members = self._members.get(str(body.get("channel")), [])
        return web.json_response(
            {"ok": True, "members": members, "response_metadata": {"next_cursor": ""}}
        )

    def _conversations_info(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        channel = str(body.get("channel"))
        return web.json_response(
            {
                "ok": True,
                "channel": {
                    "id": channel,
                    "name": channel.lower(),
                    "is_im": channel.startswith("D"),
                    "is_private": channel.startswith("G"),
                    "is_member": True,
                    "is_shared": False,
                    "is_ext_shared": False,
                    "is_org_shared": False,
                    **self._channels.get(channel, {}),
                },
            }
        )

    def _conversations_open(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        users = str(body.get("users") or "")
        return web.json_response({"ok": True, "channel": {"id": "D" + users.split(",")[0]}})

    def _users_conversations(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        channels = self._user_channels.get(str(body.get("user") or BOT_USER_ID), [])
        return web.json_response(
            {
                "ok": True,
                "channels": [{"id": c, "name": c.lower()} for c in channels],
                "response_metadata": {"next_cursor": ""},
            }
        )

    def _default_user(self, user_id: str) -> dict[str, Any]:
        return {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": user_id.lower(),
            "real_name": user_id,
            "tz": "UTC",
            "is_admin": False,
            "is_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_stranger": False,
            "is_bot": False,
            "deleted": False,
            "profile": {"display_name": user_id.lower(), "real_name": user_id},
        }

    def _users_info(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        user_id = str(body.get("user"))
        user = self._users.get(user_id) or self._default_user(user_id)
        return web.json_response({"ok": True, "user": user})

    def _view(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        view = body.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        return web.json_response({"ok": True, "view": {"id": "V1", **(view or {})}})

    def _upload_url(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        fid = f"F{uuid.uuid4().hex[:8].upper()}"
        return web.json_response(
            {"ok": True, "upload_url": f"{self.base}/upload/{fid}", "file_id": fid}
        )

    def _complete_upload(self, body: dict[str, Any], _headers: dict[str, str]) -> web.Response:
        files = body.get("files")
        if isinstance(files, str):
            files = json.loads(files)
        return web.json_response({"ok": True, "files": files or []})

    async def _upload(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="OK")

    async def _download(self, request: web.Request) -> web.Response:
        self.calls.append(
            SlackCall(
                "file.download", {"file_id": request.match_info["file_id"]}, dict(request.headers)
            )
        )
        self._changed.set()
        if not request.headers.get("Authorization", "").startswith("Bearer xoxb-"):
            # Slack answers unauthenticated downloads with its HTML login page.
            return web.Response(text="<html>login</html>", content_type="text/html")
        redirect = self._redirects.get(request.match_info["file_id"])
        if redirect is not None:
            raise web.HTTPFound(redirect)
        stored = self._files.get(request.match_info["file_id"])
        if stored is None:
            return web.Response(status=404)
        data, mimetype = stored
        return web.Response(body=data, content_type=mimetype)

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(SlackCall("response_url", body, dict(request.headers)))
        self._changed.set()
        ephemeral = body.get("response_type", "ephemeral") != "in_channel"
        message = SlackMessage(
            channel=str(body.get("channel", "")),
            ts=self._next_ts(),
            text=str(body.get("text") or ""),
            blocks=_blocks(body.get("blocks")),
            ephemeral_to="response_url" if ephemeral else None,
        )
        self._messages[(message.channel, message.ts)] = message
        return web.Response(text="ok")


def _error(code: str) -> web.Response:
    return web.json_response({"ok": False, "error": code})
