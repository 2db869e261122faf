"""The built-in tools: read-only, each declaring what it may read.

- `search_knowledge`: the model searches the knowledge base again with its own query,
  through the same `KnowledgeSource` with the turn's own `RetrievalQuery` (only the words
  replaced: channel, asker, DM or not and the channel's scopes stay), so the scopes are
  computed identically and never go outside what the asking channel may read. What it
  finds is numbered after the turn's sources and cited like them.
- `read_thread`: the messages of the thread being answered (no other thread).
- `lookup_user` / `lookup_channel`: public facts only (names, titles, topics), through
  the surface's `SlackReader`; nothing when no Slack is attached (the CLI).
- `current_time`: the injected clock, in UTC or a named time zone.
- `generate_image`: a picture from the channel's `image_model` through the images
  endpoint, billed per image in the ledger and posted in the thread (`bot.tools.images`);
  offered only where an admin set an image model (`/candor image-model`), off by default.

Built-ins are read-only and never need approval; like every tool they are offered only
where an admin allowed them (`/candor tools allow builtin[/TOOL] [#channel|--workspace]`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.clock import Clock
from bot.ports import KnowledgeSource, NoKnowledgeInScope, RetrievedHit
from bot.tools.base import BUILTIN, SlackReader, ToolContext, ToolOutput, ToolSpec
from bot.tools.images import SIZES, ImageStudio

#: Longest query the model may send to `search_knowledge`.
MAX_QUERY_CHARS = 500
#: Most thread messages `read_thread` returns.
THREAD_LIMIT = 50
GENERATE_IMAGE = "generate_image"


@dataclass
class BuiltinEnv:
    """What the built-ins may use for one turn."""

    clock: Clock
    knowledge: KnowledgeSource | None = None
    reader: SlackReader | None = None
    #: Gives a hit its source number for this answer (the same chunk keeps its number).
    number: Callable[[RetrievedHit], RetrievedHit] = field(default=lambda hit: hit)
    #: Image generation (`generate_image`), when the surface attached it.
    images: ImageStudio | None = None


Runner = Callable[[ToolContext, Mapping[str, Any], BuiltinEnv], Awaitable[ToolOutput]]


def _spec(
    name: str,
    description: str,
    properties: dict[str, Any],
    reads: str,
    required: tuple[str, ...] | None = None,
) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": properties,
            "required": list(properties if required is None else required),
            "additionalProperties": False,
        },
        server=BUILTIN,
        tool=name,
        read_only=True,
        reads=reads,
    )


SPECS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "search_knowledge",
            "Search the team's knowledge base with your own query. Returns numbered sources; "
            "cite the ones you use as [n].",
            {"query": {"type": "string", "description": "what to look for"}},
            "the knowledge this channel may read",
        ),
        _spec(
            "read_thread",
            "Read the messages of the Slack thread you are answering in.",
            {},
            "the current thread",
        ),
        _spec(
            "lookup_user",
            "Look up a Slack user's public profile (name, title, time zone) by member ID.",
            {"user_id": {"type": "string", "description": "a member ID such as U0123ABCD"}},
            "public user profiles",
        ),
        _spec(
            "lookup_channel",
            "Look up a public Slack channel's name, topic and purpose by channel ID.",
            {"channel_id": {"type": "string", "description": "a channel ID such as C0123ABCD"}},
            "public channel information",
        ),
        _spec(
            "current_time",
            "The current date and time, in UTC or in an IANA time zone such as Europe/Berlin.",
            {"timezone": {"type": "string", "description": "IANA time zone, or UTC"}},
            "the clock",
            required=(),
        ),
        _spec(
            GENERATE_IMAGE,
            "Generate an image from a text description; it is posted in this thread. "
            "Use it only when the user asks for a picture. Each image is billed.",
            {
                "prompt": {"type": "string", "description": "what the image shows, in detail"},
                "size": {"type": "string", "enum": list(SIZES), "description": "optional"},
            },
            "nothing (it posts one image in the thread, billed per image)",
            required=("prompt",),
        ),
    )
}


def describe(name: str, arguments: Mapping[str, Any]) -> str:
    """What Candor is doing, for the status line ("searching the knowledge base for …")."""
    if name == "search_knowledge":
        return f"searching the knowledge base for “{str(arguments.get('query', ''))[:80]}”"
    if name == "read_thread":
        return "reading this thread"
    if name == "lookup_user":
        return "looking up a user"
    if name == "lookup_channel":
        return "looking up a channel"
    if name == "current_time":
        return "checking the time"
    if name == GENERATE_IMAGE:
        return "drawing an image"
    return f"running {name}"


async def search_knowledge(
    ctx: ToolContext, arguments: Mapping[str, Any], env: BuiltinEnv
) -> ToolOutput:
    query = str(arguments.get("query") or "").strip()[:MAX_QUERY_CHARS]
    if not query:
        return ToolOutput("search_knowledge needs a non-empty `query`.", error=True)
    if env.knowledge is None or ctx.retrieval is None:
        return ToolOutput("The knowledge base is turned off here.", error=True)
    try:
        hits = await env.knowledge.retrieve(replace(ctx.retrieval, query=query))
    except NoKnowledgeInScope:
        return ToolOutput("The knowledge base has nothing here yet.")
    if not hits:
        return ToolOutput(f"No knowledge found for “{query}”.")
    numbered = [env.number(hit) for hit in hits]
    parts = [f"[{hit.index}] {hit.title} ({hit.link})\n{hit.text}".strip() for hit in numbered]
    return ToolOutput("\n\n".join(parts), hits=numbered)


async def read_thread(
    ctx: ToolContext, _arguments: Mapping[str, Any], env: BuiltinEnv
) -> ToolOutput:
    if env.reader is None:
        return ToolOutput("There is no Slack thread here.", error=True)
    messages = await env.reader.read_thread(ctx.channel_id, ctx.thread_ts, THREAD_LIMIT)
    if not messages:
        return ToolOutput("The thread has no messages I can read.")
    return ToolOutput("\n".join(f"<@{m.get('user', '?')}>: {m.get('text', '')}" for m in messages))


async def lookup_user(
    ctx: ToolContext, arguments: Mapping[str, Any], env: BuiltinEnv
) -> ToolOutput:
    user_id = str(arguments.get("user_id") or "").strip().strip("<@>")
    if env.reader is None:
        return ToolOutput("Slack is not connected here.", error=True)
    info = await env.reader.lookup_user(user_id)
    if info is None:
        return ToolOutput(f"No user {user_id} found.", error=True)
    return ToolOutput(_fields(info))


async def lookup_channel(
    ctx: ToolContext, arguments: Mapping[str, Any], env: BuiltinEnv
) -> ToolOutput:
    channel_id = str(arguments.get("channel_id") or "").strip().strip("<#>").split("|")[0]
    if env.reader is None:
        return ToolOutput("Slack is not connected here.", error=True)
    info = await env.reader.lookup_channel(channel_id)
    if info is None:
        return ToolOutput(f"No public channel {channel_id} found.", error=True)
    return ToolOutput(_fields(info))


async def current_time(
    _ctx: ToolContext, arguments: Mapping[str, Any], env: BuiltinEnv
) -> ToolOutput:
    name = str(arguments.get("timezone") or "UTC").strip() or "UTC"
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ToolOutput(f"`{name}` is not an IANA time zone.", error=True)
    now = env.clock.now().astimezone(zone)
    return ToolOutput(now.strftime(f"%A %Y-%m-%d %H:%M:%S ({name}, UTC%z)"))


async def generate_image(
    ctx: ToolContext, arguments: Mapping[str, Any], env: BuiltinEnv
) -> ToolOutput:
    if env.images is None:
        return ToolOutput("Image generation is not available here.", error=True)
    size = arguments.get("size")
    return await env.images.generate(
        ctx, str(arguments.get("prompt") or ""), str(size) if size else None
    )


RUNNERS: dict[str, Runner] = {
    "search_knowledge": search_knowledge,
    "read_thread": read_thread,
    "lookup_user": lookup_user,
    "lookup_channel": lookup_channel,
    "current_time": current_time,
    GENERATE_IMAGE: generate_image,
}


def _fields(info: Mapping[str, Any]) -> str:
    return "\n".join(f"{key}: {value}" for key, value in info.items() if value not in (None, ""))
