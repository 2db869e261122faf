"""Admins teach Candor files: upload them in a DM with the message `learn`.

`learn` adds the files to the workspace scope; `learn #channel` to that channel's scope
(private if the channel is). Only admins may do it; anyone else is told so in one
sentence and nothing is stored. Files go through `knowledge.load_upload` (Markdown,
text, HTML, PDF); an unsupported or oversized file is skipped with the reason. Uploading
a new version of the same file name replaces the old one.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from bot import admin as admin_mod
from bot.deps import Deps
from bot.kb import ScopedKnowledge
from handlers.directory import is_private_channel, user_lookup
from knowledge import Scope, UnsupportedFile, load_upload

if TYPE_CHECKING:
    from handlers.events import Incoming
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
    for f in incoming.files:
        name = str(f.get("name") or "file")
        mimetype = str(f.get("mimetype") or "")
        if mimetype.startswith("image/"):
            continue
        got = await surface.download(f, limit=MAX_UPLOAD_BYTES)
        if got.data is None:
            lines.append(f"• {name}: skipped — {got.error}")
            continue
        try:
            document = load_upload(got.data, name, mimetype, scope)
        except UnsupportedFile as exc:
            lines.append(f"• {name}: skipped — {exc}")
            continue
        report = await knowledge.kb.add_document(document)
        lines.append(f"• {name}: {report.added} chunks added, {report.unchanged} unchanged")
    where = "the whole workspace" if channel is None else f"<#{channel}> and DMs of its members"
    await say(f"Added to the knowledge base, for {where}:\n" + "\n".join(lines))
