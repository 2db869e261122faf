"""`/candor kb …`: how a channel retrieves, and what the knowledge base knows.

`kb scopes|top-k|floor` are channel settings (validated by `bot.admin.settings`, written
by `bot.admin.service`). `kb ingest` reads a channel's history and threads (with permalinks) into
that channel's own scope, private when the channel is; `kb ingest #c --sync` also keeps it
in sync (the hourly `kb_sync` job reads the messages posted since, `bot.jobs.sync`) until
`kb unsync #c` (the knowledge stays until `kb remove`). `kb sources` lists what is known,
marking what is synced and when, and `kb remove` forgets a source. Every change is written
to the audit log.
"""

from __future__ import annotations

from typing import Any

from bot.admin import settings as validate
from bot.admin.settings import InvalidValue
from bot.db.sync_models import SYNC_FOLDER, SYNC_SLACK_CHANNEL
from bot.jobs.sync import SyncSource
from handlers.commands.base import Invocation, Subcommand, one_value, pop_target, set_values
from handlers.directory import is_private_channel

_USAGE = (
    "Usage: `/candor kb scopes workspace,channel:C123 | kb top-k N | kb floor X [#channel]`, "
    "`/candor kb ingest [#channel] [--sync]`, `/candor kb unsync #channel|FOLDER`, "
    "`/candor kb sources`, `/candor kb remove SOURCE`"
)


async def cmd_kb(call: Invocation) -> str:
    if not call.args:
        raise InvalidValue(_USAGE)
    what = call.args[0].lower()
    call.args = call.args[1:]
    if what in ("ingest", "sources", "remove", "unsync"):
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
    """Ingest a channel's history into its own scope (and keep it in sync), list sources,
    remove one, or stop syncing one."""
    from bot.jobs import sync
    from bot.kb import ScopedKnowledge
    from knowledge import Scope

    knowledge = call.deps.knowledge
    if not isinstance(knowledge, ScopedKnowledge):
        return "The knowledge base is turned off in this deployment."
    kb = knowledge.kb
    if what == "sources":
        sources = await kb.list_sources()
        syncs = await sync.list_syncs(call.deps.db)
        if not sources and not syncs:
            return "The knowledge base is empty. Add a channel with `/candor kb ingest #channel`."
        lines = [
            f"• `{s.source}` — {s.title or s.source} ({s.chunks} chunks, `{s.scope}`)"
            + (f" — {synced.status()}" if (synced := sync.sync_of(syncs, s.source)) else "")
            for s in sources[:50]
        ]
        more = f"\n…and {len(sources) - 50} more." if len(sources) > 50 else ""
        kept = [f"• {_label(s)} into `{s.scope}`: {s.status()}" for s in syncs]
        tail = (
            "\n*Kept in sync* (`/candor kb unsync #channel|FOLDER` stops one)\n" + "\n".join(kept)
            if kept
            else ""
        )
        return "*Knowledge sources*\n" + "\n".join(lines) + more + tail
    if what == "unsync":
        return await _unsync(call)
    if what == "remove":
        source = one_value(call, "/candor kb remove SOURCE")
        removed = await kb.remove_source(source)
        if not removed:
            raise InvalidValue(f"There is no source `{source}`; `/candor kb sources` lists them.")
        await _audit(call, "kb remove", source, {"chunks": removed}, None)
        return f"Removed `{source}` and its {removed} chunks from the knowledge base."
    keep_synced = "--sync" in call.args
    call.args = [a for a in call.args if a != "--sync"]
    target = await pop_target(call)
    if target.is_default or call.args:
        raise InvalidValue(
            "Usage: `/candor kb ingest [#channel] [--sync]` (a channel, not the workspace)."
        )
    info = (await call.client.conversations_info(channel=target.channel_id)).get("channel") or {}
    private = is_private_channel(info)
    scope = Scope.channel(target.channel_id, private=private)
    started = call.deps.clock.now()  # the next sync reads what was posted after this
    report = await sync.ingest_channel(
        kb, call.client, target.channel_id, scope, channel_name=info.get("name")
    )
    after: dict[str, Any] = {"chunks": report.chunks}
    if keep_synced:
        await sync.register(
            call.deps.db,
            kind=SYNC_SLACK_CHANNEL,
            target=target.channel_id,
            scope=scope,
            label=f"#{info.get('name') or target.channel_id}",
            now=started,
            synced_at=started,
            workspace_id=call.team_id,
            registered_by=call.user_id,
        )
        after["sync"] = True
    await _audit(call, "kb ingest", scope.key, None, after)
    where = "private" if private else "public"
    note = (
        " I'll keep it in sync: the `kb_sync` job reads its new messages (hourly by default) "
        "until `/candor kb unsync`."
        if keep_synced
        else ""
    )
    return (
        f"Learned <#{target.channel_id}> ({where}): {report.added} chunks added, "
        f"{report.removed} removed, {report.unchanged} unchanged. Its knowledge is only used "
        "in that channel (and in DMs of its members) unless you add its scope elsewhere." + note
    )


def _label(source: SyncSource) -> str:
    if source.kind == SYNC_SLACK_CHANNEL:
        return f"<#{source.target}>"
    return f"`{source.target}`"


async def _unsync(call: Invocation) -> str:
    """Stop syncing a channel (`#channel`) or a folder registered from the CLI."""
    from bot.jobs import sync

    usage = "/candor kb unsync #channel|FOLDER"
    if call.args and call.args[0].startswith("/"):
        folder = one_value(call, usage)
        if not await sync.unregister(call.deps.db, kind=SYNC_FOLDER, target=folder):
            raise InvalidValue(f"`{folder}` is not kept in sync; `/candor kb sources` lists them.")
        await _audit(call, "kb unsync", folder, {"sync": True}, {"sync": False})
        return f"Stopped syncing `{folder}`; its knowledge stays (`/candor kb remove` drops it)."
    target = await pop_target(call)
    if target.is_default or call.args:
        raise InvalidValue(f"Usage: `{usage}`.")
    if not await sync.unregister(call.deps.db, kind=SYNC_SLACK_CHANNEL, target=target.channel_id):
        raise InvalidValue(
            f"<#{target.channel_id}> is not kept in sync; `/candor kb sources` lists what is."
        )
    await _audit(call, "kb unsync", f"slack:{target.channel_id}", {"sync": True}, {"sync": False})
    return (
        f"Stopped syncing <#{target.channel_id}>; its knowledge stays "
        "(`/candor kb remove SOURCE` drops it)."
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
            "kb ingest #channel --sync",
            "kb unsync #channel|FOLDER",
            "kb sources",
            "kb remove SOURCE",
        ),
        cmd_kb,
        f"what a channel retrieves (top-k {validate.TOP_K_MIN}–{validate.TOP_K_MAX}, "
        f"floor {validate.FLOOR_MIN:g}–{validate.FLOOR_MAX:g}); `ingest` learns a channel's "
        "history (its own scope), `--sync` keeps it up to date until `unsync`; `sources` "
        "lists what is known, `remove` forgets one",
    ),
)
