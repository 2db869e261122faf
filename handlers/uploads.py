"""Admins teach Candor files: upload them in a DM with the message `learn`.

`learn` adds the files to the workspace scope; `learn #channel` to that channel's scope
(private if the channel is). Only admins may do it; anyone else is told so in one
sentence and nothing is stored. Files go through `knowledge.load_upload` (Markdown,
text, HTML, PDF), in a worker thread so a long PDF never stalls other conversations.
Each file stands alone: an unsupported, binary, broken or oversized file is named with
its reason and the others are still learned. Uploading a new version of the same file
name for the same scope replaces the old one; the same name for another scope is a
separate source. Every file learned writes an audit row: who, scope, file and chunks.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

from bot.admin import audit
from bot.admin import service as admin_mod
from bot.deps import Deps
from bot.kb import ScopedKnowledge
from handlers.directory import is_private_channel, user_lookup
from handlers.incoming import Incoming
from knowledge import Scope, UnsupportedFile, load_upload

if TYPE_CHECKING:
    from handlers.slack_io import SlackSurface

log = logging.getLogger(__name__)

LEARN = re.compile(r"^\s*(?:learn|remember)\b\s*(?:<#([CG][A-Z0-9]+)(?:\|[^>]*)?>)?\s*$", re.I)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
NOT_ADMIN = "Only Candor admins can add files to the knowledge base; ask one to upload it."


def wants_to_learn(incoming: Incoming) -> bool:
    """A DM whose text is `learn [#channel]` and that carries files other than images."""
    return (
        incoming.is_dm
        and bool(LEARN.match(incoming.text))
        and any(not str(f.get("mimetype") or "").startswith("image/") for f in incoming.files)
    )


async def learn(deps: Deps, surface: SlackSurface, incoming: Incoming) -> None:
    """Ingest the message's files and reply in the thread with what happened."""
    client = surface.client

    async def say(text: str) -> None:
        await client.chat_postMessage(
            channel=incoming.channel, thread_ts=incoming.thread_ts, text=text
        )

    if not await admin_mod.for_deps(deps).is_admin(incoming.user, user_lookup(client)):
        await say(NOT_ADMIN)
        return
    knowledge = deps.knowledge
    if not isinstance(knowledge, ScopedKnowledge):
        await say("The knowledge base is turned off in this deployment.")
        return
    match = LEARN.match(incoming.text)
    channel = match.group(1) if match else None
    scope = Scope.workspace()
    if channel:
        info = (await client.conversations_info(channel=channel)).get("channel") or {}
        scope = Scope.channel(channel, private=is_private_channel(info))
    lines: list[str] = []
    learned = 0
    for f in incoming.files:
        if str(f.get("mimetype") or "").startswith("image/"):
            continue
        line, chunks = await _learn_file(deps, surface, knowledge, incoming, f, scope)
        lines.append(line)
        learned += chunks is not None
    where = "the whole workspace" if channel is None else f"<#{channel}> and DMs of its members"
    head = (
        f"Added to the knowledge base, for {where}:"
        if learned
        else "Nothing was added to the knowledge base:"
    )
    await say(head + "\n" + "\n".join(lines))


async def _learn_file(
    deps: Deps,
    surface: SlackSurface,
    knowledge: ScopedKnowledge,
    incoming: Incoming,
    f: dict[str, Any],
    scope: Scope,
) -> tuple[str, int | None]:
    """Learn one file: the reply line, and its chunk count (None when it was not learned)."""
    name = str(f.get("name") or "file")
    got = await surface.download(f, limit=MAX_UPLOAD_BYTES)
    if got.data is None:
        return f"• {got.error}", None  # the sentence names the file
    try:
        # Parsing (a long PDF above all) is CPU work: off the event loop.
        document = await asyncio.to_thread(
            load_upload, got.data, name, str(f.get("mimetype") or ""), scope
        )
    except UnsupportedFile as exc:
        return f"• {name}: skipped — {exc}", None
    except Exception:
        log.exception("Loading the upload %s failed", name)
        return f"• {name}: skipped — The file could not be read.", None
    try:
        report = await knowledge.kb.add_document(document)
    except Exception:
        log.exception("Storing the upload %s failed", name)
        return f"• {name}: not added — the knowledge base could not store it just now.", None
    line = f"• {name}: {report.added} chunks added, {report.unchanged} unchanged"
    try:
        async with deps.db.write() as session:
            await audit.record(
                session,
                workspace_id=incoming.team_id,
                actor_id=incoming.user,
                action="kb learn",
                target=scope.key,
                before=None,
                after={"file": name, "source": document.source, "chunks": report.chunks},
                when=deps.clock.now(),
            )
    except Exception:
        log.exception("The audit row for the upload %s could not be written", name)
        line += " (but the audit log could not be written)"
    return line, report.chunks
