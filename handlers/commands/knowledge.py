"""`/candor kb …`: how a channel retrieves, and what the knowledge base knows.

`kb scopes|top-k|floor` are channel settings (validated by `bot.admin.settings`, written
by `bot.admin.service`). `kb ingest` reads a channel's history and threads (with permalinks) into
that channel's own scope, private when the channel is; `kb sources` lists what is known
and `kb remove` forgets a source. Every change is written to the audit log.
"""

from __future__ import annotations

from typing import Any

from bot.admin import settings as validate
from bot.admin.settings import InvalidValue
from handlers.commands.base import Invocation, Subcommand, one_value, pop_target, set_values
from handlers.directory import is_private_channel

_USAGE = (
    "Usage: `/candor kb scopes workspace,channel:C123 | kb top-k N | kb floor X [#channel]`, "
    "`/candor kb ingest [#channel]`, `/candor kb sources`, `/candor kb remove SOURCE`"
)


async def cmd_kb(call: Invocation) -> str:
    if not call.args:
        raise InvalidValue(_USAGE)
    what = call.args[0].lower()
    call.args = call.args[1:]
    if what in ("ingest", "sources", "remove"):
        return await kb_content(call, what)
    target = await pop_target(call)
    if what == "scopes":
        scopes = validate.parse_scopes(call.args)
        return await set_values(call, target, "kb scopes", {"kb_scopes": scopes})
    if what in ("top-k", "topk", "top_k"):
        value = validate.parse_top_k(one_value(call, "/candor kb top-k N [#channel]"))
        return await set_values(call, target, "kb top-k", {"kb_top_k": value})
    if what == "floor":
        floor = validate.parse_score_floor(one_value(call, "/candor kb floor X [#channel]"))
        return await set_values(call, target, "kb floor", {"kb_score_floor": floor})
    raise InvalidValue(_USAGE)


async def kb_content(call: Invocation, what: str) -> str:
    """Ingest a channel's history into its own scope, list sources, or remove one."""
    from bot.kb import ScopedKnowledge
    from knowledge import Scope, load_slack_channel

    knowledge = call.deps.knowledge
    if not isinstance(knowledge, ScopedKnowledge):
        return "The knowledge base is turned off in this deployment."
    kb = knowledge.kb
    if what == "sources":
        sources = await kb.list_sources()
        if not sources:
            return "The knowledge base is empty. Add a channel with `/candor kb ingest #channel`."
        lines = [
            f"• `{s.source}` — {s.title or s.source} ({s.chunks} chunks, `{s.scope}`)"
            for s in sources[:50]
        ]
        more = f"\n…and {len(sources) - 50} more." if len(sources) > 50 else ""
        return "*Knowledge sources*\n" + "\n".join(lines) + more
    if what == "remove":
        source = one_value(call, "/candor kb remove SOURCE")
        removed = await kb.remove_source(source)
        if not removed:
            raise InvalidValue(f"There is no source `{source}`; `/candor kb sources` lists them.")
        await _audit(call, "kb remove", source, {"chunks": removed}, None)
        return f"Removed `{source}` and its {removed} chunks from the knowledge base."
    target = await pop_target(call)
    if target.is_default or call.args:
        raise InvalidValue("Usage: `/candor kb ingest [#channel]` (a channel, not the workspace).")
    info = (await call.client.conversations_info(channel=target.channel_id)).get("channel") or {}
    private = is_private_channel(info)
    scope = Scope.channel(target.channel_id, private=private)
    document = await load_slack_channel(
        call.client, target.channel_id, scope, channel_name=info.get("name")
    )
    report = await kb.add_document(document)
    await _audit(call, "kb ingest", scope.key, None, {"chunks": report.chunks})
    where = "private" if private else "public"
    return (
        f"Learned <#{target.channel_id}> ({where}): {report.added} chunks added, "
        f"{report.removed} removed, {report.unchanged} unchanged. Its knowledge is only used "
        "in that channel (and in DMs of its members) unless you add its scope elsewhere."
    )


async def _audit(call: Invocation, action: str, target: str, before: Any, after: Any) -> None:
    from bot.admin.audit import record

    async with call.deps.db.write() as session:
        await record(
            session,
            workspace_id=call.team_id,
            actor_id=call.user_id,
            action=action,
            target=target,
            before=before,
            after=after,
            when=call.deps.clock.now(),
        )


SUBCOMMANDS = (
    Subcommand(
        "kb",
        (
            "kb scopes workspace,channel:C123 [#channel]",
            "kb top-k N [#channel]",
            "kb floor X [#channel]",
            "kb ingest [#channel]",
            "kb sources",
            "kb remove SOURCE",
        ),
        cmd_kb,
        f"what a channel retrieves (top-k {validate.TOP_K_MIN}–{validate.TOP_K_MAX}, "
        f"floor {validate.FLOOR_MIN:g}–{validate.FLOOR_MAX:g}); `ingest` learns a channel's "
        "history (its own scope); `sources` lists what is known, `remove` forgets one",
    ),
)
