"""What a tool is, what one call of it sees and returns, and the ports to the surface."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.ports import RetrievalQuery, RetrievedHit

#: The `server` name under which built-in tools are allowed, denied and listed.
BUILTIN = "builtin"
#: Between an MCP server's name and its tool's in the name the model sees: OpenAI
#: function names allow only [a-zA-Z0-9_-], so `server/tool` is not possible.
SEPARATOR = "__"
#: A tool result longer than this is cut (the model's context is not a dumping ground).
MAX_RESULT_CHARS = 8000


@dataclass(frozen=True)
class ToolSpec:
    """One tool as the model sees it, and where it comes from."""

    #: The name the model calls (`search_knowledge`, `notes__add_note`).
    name: str
    description: str
    #: JSON Schema of the arguments.
    parameters: Mapping[str, Any]
    #: `builtin`, or the MCP server's name.
    server: str
    #: The tool's own name on its server.
    tool: str
    #: Read-only tools run without asking; others wait for a person's approval.
    read_only: bool
    #: What the tool may read, in a few words (shown by `candor tools list`).
    reads: str = ""

    @property
    def label(self) -> str:
        """How admins name the tool: `builtin/read_thread`, `notes/add_note`."""
        return f"{self.server}/{self.tool}"

    def as_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description[:1024],
                "parameters": dict(self.parameters) or {"type": "object", "properties": {}},
            },
        }


@dataclass(frozen=True)
class ToolContext:
    """The turn a tool call belongs to: who asks, where, and what retrieval may read."""

    workspace_id: str
    channel_id: str
    thread_ts: str
    user_id: str
    is_dm: bool
    #: The turn's own retrieval query: `search_knowledge` asks it again with the model's
    #: words, so its scopes are decided exactly as the turn's were. None: no retrieval.
    retrieval: RetrievalQuery | None = None
    event_id: str | None = None
    #: The channel's image model (`generate_image`; `Toolbox.open` reads it when the tool
    #: is allowed); None: no image generation here.
    image_model: str | None = None


@dataclass
class ToolOutput:
    """What a tool call returns to the model; `hits` become citable sources."""

    text: str
    hits: list[RetrievedHit] = field(default_factory=list)
    error: bool = False

    def for_model(self) -> str:
        text = self.text if len(self.text) <= MAX_RESULT_CHARS else self.text[:MAX_RESULT_CHARS]
        return ("error: " + text) if self.error else text


@dataclass(frozen=True)
class PendingCall:
    """A call waiting for a person's approval, with the exact arguments it would run with."""

    spec: ToolSpec
    arguments: Mapping[str, Any]

    def arguments_json(self) -> str:
        return json.dumps(dict(self.arguments), indent=2, sort_keys=True, ensure_ascii=False)


class SlackReader(Protocol):
    """Read-only Slack look-ups for the built-ins (public information only)."""

    async def read_thread(
        self, channel_id: str, thread_ts: str, limit: int
    ) -> list[dict[str, str]]:
        """The thread's messages, oldest first: `{"user": ..., "text": ...}`."""
        ...

    async def lookup_user(self, user_id: str) -> dict[str, Any] | None:
        """Public profile fields of a user (name, title, time zone), or None."""
        ...

    async def lookup_channel(self, channel_id: str) -> dict[str, Any] | None:
        """Public facts of a channel (name, topic, purpose, members count), or None."""
        ...


class ApprovalGate(Protocol):
    """Asks a person whether a call with side effects may run; False on deny or timeout."""

    async def ask(self, ctx: ToolContext, call: PendingCall, timeout_seconds: float) -> bool: ...


StatusSink = Callable[[ToolContext, str], Awaitable[None]]
