"""Re-sync of knowledge sources registered for it (the `kb_sync` job).

A source is registered with `/candor kb ingest #channel --sync` or
`candor kb add DIR --sync` (a row in `knowledge_syncs`, see `bot.db.sync_models`), and
stopped with `/candor kb unsync #channel|DIR` or `candor kb unsync DIR`; its knowledge
stays until `kb remove`. Each run of the job (`CANDOR_JOBS_KB_SYNC_CRON`, hourly) re-ingests
every registered source incrementally:

- **a Slack channel** reads only the messages posted since its last sync
  (`conversations.history` with `oldest=` the last sync's start, by the injected clock)
  and stores them as a source of their own, `slack:C123@<oldest>`; nothing new, nothing
  written. Replies to threads that started before the last sync are not seen until the
  channel is ingested again in full (`/candor kb ingest #channel`), which also folds those
  incremental sources back into the one `slack:C123`.
- **a folder** stats its files and reads only those whose modification time or size
  changed since the last sync (the rest cost one `stat`); a changed file is re-added
  (chunk ids derive from content, so only the changed chunks are embedded), and the
  sources of files that disappeared are removed. A folder that is gone altogether (an
  unmounted volume) is an error, not a reason to forget its knowledge.

One source failing records its error on its row and never stops the others. Slack is
reached through the surface's client in `deps.extras[SLACK_CLIENT]` (set by the Slack
runtime; `bot/` imports no Slack): a process without it (`candor jobs run`) syncs folders
only and leaves channels for `candor serve`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from bot.db.engine import Database
from bot.db.sync_models import SYNC_FOLDER, SYNC_SLACK_CHANNEL, KnowledgeSyncRow
from bot.deps import Deps
from knowledge import Document, Scope
from knowledge.loaders import SlackClient, UnsupportedFile, file_kind, load_file, load_slack_channel
from knowledge.service import IngestReport, KnowledgeBase

log = logging.getLogger(__name__)

#: The `deps.extras` key of the surface's Slack Web API client (`handlers.app` sets it).
SLACK_CLIENT = "slack_client"
_ERROR_CHARS = 300


@dataclass(frozen=True)
class SyncSource:
    """A registered source as listings show it."""

    kind: str
    target: str
    scope: str
    private: bool
    label: str
    last_synced_at: datetime | None
    last_result: str | None
    last_error: str | None

    @property
    def source_prefix(self) -> str:
        """The knowledge source ids this registration writes start with this."""
        if self.kind == SYNC_SLACK_CHANNEL:
            return f"slack:{self.target}"
        return f"file:{self.target}{os.sep}"

    def covers(self, source: str) -> bool:
        """Whether knowledge source `source` is kept up to date by this registration."""
        if self.kind == SYNC_SLACK_CHANNEL:
            return source == self.source_prefix or source.startswith(self.source_prefix + "@")
        return source.startswith(self.source_prefix)

    def status(self) -> str:
        """`synced 2026-11-30 10:00 UTC`, `not synced yet`, or the last error."""
        when = (
            f"synced {_utc(self.last_synced_at):%Y-%m-%d %H:%M} UTC"
            if self.last_synced_at is not None
            else "not synced yet"
        )
        return f"{when}; last error: {self.last_error}" if self.last_error else when


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _source(row: KnowledgeSyncRow) -> SyncSource:
    return SyncSource(
        kind=row.kind,
        target=row.target,
        scope=row.scope,
        private=row.private,
        label=row.label or row.target,
        last_synced_at=_utc(row.last_synced_at) if row.last_synced_at is not None else None,
        last_result=row.last_result,
        last_error=row.last_error,
    )


def _scope(row: KnowledgeSyncRow) -> Scope:
    return Scope.parse(row.scope, private=row.private)


# --- registrations ------------------------------------------------------------------------


async def register(
    db: Database,
    *,
    kind: str,
    target: str,
    scope: Scope,
    now: datetime,
    label: str | None = None,
    synced_at: datetime | None = None,
    state: dict[str, Any] | None = None,
    workspace_id: str | None = None,
    registered_by: str | None = None,
) -> SyncSource:
    """Register `target` for re-sync (or update its registration); `synced_at` is when the
    ingest that came with it started, so the next sync reads only what is newer."""
    async with db.write() as session:
        row = (
            await session.execute(
                select(KnowledgeSyncRow).where(
                    KnowledgeSyncRow.kind == kind, KnowledgeSyncRow.target == target
                )
            )
        ).scalar_one_or_none()
        if row is None:
            row = KnowledgeSyncRow(kind=kind, target=target, created_at=now)
            session.add(row)
        row.scope = scope.key
        row.private = scope.visibility == "private"
        row.label = label or target
        row.workspace_id = workspace_id
        row.registered_by = registered_by
        row.last_synced_at = synced_at
        row.last_error = None
        row.last_result = "registered"
        row.state = state
        await session.flush()
        return _source(row)


async def unregister(db: Database, *, kind: str, target: str) -> bool:
    """Stop syncing `target` (its knowledge stays); False when it was not registered."""
    async with db.write() as session:
        result = await session.execute(
            delete(KnowledgeSyncRow).where(
                KnowledgeSyncRow.kind == kind, KnowledgeSyncRow.target == target
            )
        )
    return int(getattr(result, "rowcount", 0) or 0) > 0


async def list_syncs(db: Database) -> list[SyncSource]:
    """Every registered source, channels first, then folders, by target."""
    async with db.sessions() as session:
        rows = (
            await session.execute(
                select(KnowledgeSyncRow).order_by(
                    KnowledgeSyncRow.kind.desc(), KnowledgeSyncRow.target
                )
            )
        ).scalars()
        return [_source(row) for row in rows]


def sync_of(syncs: list[SyncSource], source: str) -> SyncSource | None:
    """The registration that keeps knowledge source `source` up to date, if any."""
    return next((s for s in syncs if s.covers(source)), None)


# --- Slack channels -----------------------------------------------------------------------


def slack_ts(when: datetime) -> str:
    """A Slack timestamp (`seconds.micros`) for `when`."""
    return f"{when.timestamp():.6f}"


async def ingest_channel(
    kb: KnowledgeBase,
    client: SlackClient,
    channel_id: str,
    scope: Scope,
    *,
    channel_name: str | None = None,
) -> IngestReport:
    """Ingest a channel's whole history as `slack:C123`, folding in (removing) the
    incremental sources earlier syncs stored for it."""
    document = await load_slack_channel(client, channel_id, scope, channel_name=channel_name)
    report = await kb.add_document(document)
    prefix = f"slack:{channel_id}@"
    for info in await kb.list_sources():
        if info.source.startswith(prefix):
            await kb.remove_source(info.source)
    return report


async def _sync_channel(
    kb: KnowledgeBase, client: SlackClient, row: KnowledgeSyncRow, now: datetime
) -> str:
    name = (row.label or "").lstrip("#") or None
    if row.last_synced_at is None:
        report = await ingest_channel(kb, client, row.target, _scope(row), channel_name=name)
        return f"ingested in full: {report.chunks} chunks"
    oldest = slack_ts(_utc(row.last_synced_at))
    document = await load_slack_channel(
        client,
        row.target,
        _scope(row),
        channel_name=name,
        oldest=oldest,
        source=f"slack:{row.target}@{oldest}",
    )
    if not document.text.strip():
        return "no new messages"
    stamp = f"{_utc(row.last_synced_at):%Y-%m-%d %H:%M} UTC"
    document = Document(
        document.source,
        f"{document.title} (since {stamp})",
        document.link,
        document.scope,
        document.text,
        document.sections,
    )
    report = await kb.add_document(document)
    return f"{len(document.parts())} new threads or days, {report.added} chunks added"


# --- folders ------------------------------------------------------------------------------

Signature = list[int]


def folder_files(root: Path) -> dict[str, Signature]:
    """Every supported file under `root` (hidden entries skipped, as `kb add` does) with
    its `[mtime_ns, size]`, keyed by the resolved path its knowledge source is named by.
    `FileNotFoundError` (with a sentence) when the folder is gone."""
    if not root.is_dir():
        raise FileNotFoundError(f"The folder {root} does not exist (any more).")
    found: dict[str, Signature] = {}
    for path in root.rglob("*"):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if not path.is_file() or file_kind(path.name) is None:
            continue
        stat = path.stat()
        found[str(path.resolve())] = [stat.st_mtime_ns, stat.st_size]
    return found


def _load(paths: list[str], scope: Scope) -> tuple[list[Document], int]:
    documents: list[Document] = []
    skipped = 0
    for path in paths:
        try:
            documents.append(load_file(path, scope))
        except UnsupportedFile:
            skipped += 1
        except Exception:  # one bad file never stops the sync
            log.exception("Loading %s failed", path)
            skipped += 1
    return documents, skipped


async def _sync_folder(kb: KnowledgeBase, row: KnowledgeSyncRow) -> tuple[str, dict[str, Any]]:
    current = await asyncio.to_thread(folder_files, Path(row.target))
    previous: dict[str, Any] = dict(row.state or {})
    changed = sorted(p for p, sig in current.items() if previous.get(p) != sig)
    documents, skipped = await asyncio.to_thread(_load, changed, _scope(row))
    if documents:
        await kb.add_documents(documents)
    prefix = f"file:{row.target}{os.sep}"
    stored = {s.source for s in await kb.list_sources() if s.source.startswith(prefix)}
    gone = ({f"file:{p}" for p in previous} | stored) - {f"file:{p}" for p in current}
    for source in sorted(gone):
        await kb.remove_source(source)
    unchanged = len(current) - len(changed)
    result = f"{len(documents)} files re-read, {len(gone)} removed, {unchanged} unchanged"
    if skipped:
        result += f", {skipped} skipped"
    return result, dict(current)


# --- the job ------------------------------------------------------------------------------


async def kb_sync(deps: Deps) -> str:
    """Re-ingest every registered source incrementally; see the module docstring."""
    from bot.kb import ScopedKnowledge

    if not isinstance(deps.knowledge, ScopedKnowledge):
        return "the knowledge base is off"
    kb = deps.knowledge.kb
    client: SlackClient | None = deps.extras.get(SLACK_CLIENT)
    async with deps.db.sessions() as session:
        ids = list(
            (await session.execute(select(KnowledgeSyncRow.id).order_by(KnowledgeSyncRow.id)))
            .scalars()
            .all()
        )
    synced = failed = waiting = 0
    for row_id in ids:
        async with deps.db.sessions() as session:
            row = await session.get(KnowledgeSyncRow, row_id)
        if row is None:
            continue  # unregistered meanwhile
        if row.kind == SYNC_SLACK_CHANNEL and client is None:
            waiting += 1
            continue
        started = deps.clock.now()
        state: dict[str, Any] | None = row.state
        try:
            if row.kind == SYNC_FOLDER:
                result, state = await _sync_folder(kb, row)
            else:
                assert client is not None
                result = await _sync_channel(kb, client, row, started)
        except Exception as exc:
            log.warning("Syncing %s %s failed", row.kind, row.target, exc_info=True)
            failed += 1
            await _record(deps.db, row_id, error=_sentence(exc))
            continue
        synced += 1
        await _record(deps.db, row_id, synced_at=started, result=result, state=state)
    summary = f"{synced} sources synced, {failed} failed"
    if waiting:
        summary += f", {waiting} channels wait for a Slack connection"
    return summary


async def _record(
    db: Database,
    row_id: int,
    *,
    error: str | None = None,
    synced_at: datetime | None = None,
    result: str | None = None,
    state: dict[str, Any] | None = None,
) -> None:
    async with db.write() as session:
        row = await session.get(KnowledgeSyncRow, row_id)
        if row is None:
            return
        row.last_error = error
        if synced_at is not None:
            row.last_synced_at = synced_at
            row.last_result = (result or "")[:200]
            row.state = state


def _sentence(exc: BaseException) -> str:
    """One line on what went wrong; no raw Slack or library text beyond its first line."""
    if isinstance(exc, FileNotFoundError) and str(exc):
        return str(exc)
    error = getattr(getattr(exc, "response", None), "get", None)
    if callable(error) and error("error"):
        return f"Slack refused: {error('error')}."
    name = type(exc).__name__
    return " ".join(f"{name}: {exc}".split())[:_ERROR_CHARS] if str(exc) else name
