"""`candor kb ...`: the knowledge base from the command line.

    candor kb add PATH... [--scope workspace|channel:C123] [--private] [--sync]
    candor kb unsync DIR|C123
    candor kb list
    candor kb remove SOURCE
    candor kb search "query" [--channel C123] [--limit K] [--json]
    candor kb reindex
    candor kb eval FILE.jsonl [--k 5] [--embedder E] [--json]   (bot/cli_kb_eval.py)

`search` reads what a question asked in `--channel` would read (the workspace scope and
that channel's own scope), or the workspace scope only: the command line cannot check
Slack memberships, so it never widens scopes. With the embedded store only one process
may open the data directory: stop `candor serve` first, or use a Qdrant server.

`add DIR --sync` also registers each folder for the `kb_sync` job (`bot.jobs.sync`), which
re-reads the files that changed and drops the ones deleted; `unsync` stops that (the
knowledge stays until `kb remove`), and `list` shows what is synced and when.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli.kb_eval import add_eval_parser, embedder_hint, run_eval
from bot.settings import ConfigError, Settings

if TYPE_CHECKING:
    from bot.jobs.sync import SyncSource


def add_kb_parser(sub: Any) -> None:
    kb = sub.add_parser("kb", help="manage the knowledge base")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    add = kb_sub.add_parser("add", help="ingest files and folders")
    add.add_argument("paths", nargs="+")
    add.add_argument("--scope", default="workspace", help="workspace (default) or channel:C123")
    add.add_argument("--private", action="store_true", help="the channel is private")
    add.add_argument(
        "--sync", action="store_true", help="keep these folders in sync (the kb_sync job)"
    )
    unsync = kb_sub.add_parser("unsync", help="stop syncing a folder or channel")
    unsync.add_argument("target", help="the folder, or the Slack channel ID")
    kb_sub.add_parser("list", help="list ingested sources")
    remove = kb_sub.add_parser("remove", help="remove a source and its chunks")
    remove.add_argument("source")
    search = kb_sub.add_parser("search", help="search as a question in a channel would")
    search.add_argument("query")
    search.add_argument("--channel", help="read this channel's scope too")
    search.add_argument("--limit", type=int, default=5)
    search.add_argument("--json", action="store_true", help="one JSON object per hit")
    kb_sub.add_parser("reindex", help="rebuild the collection with the configured embedder")
    add_eval_parser(kb_sub)


async def run_kb(args: argparse.Namespace, settings: Settings) -> int:
    if args.kb_command == "eval":
        return await run_eval(args, settings)
    from bot.kb import build_knowledge_base, uses_openai
    from bot.tokens import TokenCounter
    from knowledge import Scope, ScopeError

    scope = None
    if args.kb_command == "add":
        try:
            scope = Scope.parse(args.scope, private=args.private)
        except ScopeError as exc:
            raise ConfigError(f"--scope: {exc} Use workspace or channel:C123.") from None
    if args.kb_command == "search" and args.limit < 1:
        raise ConfigError("--limit must be at least 1.")
    if args.kb_command == "add" and args.sync:
        _check_sync_paths(args.paths)
    if args.kb_command == "unsync":
        return await _unsync(settings, args.target)

    client = None
    if uses_openai(settings):
        from bot.deps import build_openai

        client = build_openai(settings)
    tokens = TokenCounter(settings.candor.data_dir / "tiktoken")
    kb = build_knowledge_base(settings, tokens, client)
    try:
        if args.kb_command == "add":
            assert scope is not None
            code = await _add(kb, args.paths, scope, settings if args.sync else None)
            if hint := embedder_hint(settings):
                print(hint)
            return code
        if args.kb_command == "list":
            from bot.jobs.sync import sync_of

            sources = await kb.list_sources()
            syncs = await _syncs(settings)
            if not sources:
                print("The knowledge base is empty: add files with `candor kb add PATH`.")
            for info in sources:
                synced = sync_of(syncs, info.source)
                mark = f"  [synced: {synced.status()}]" if synced else ""
                print(f"{info.chunks:6d}  {info.scope:<18} {info.source}  {info.title}{mark}")
            if syncs:
                print("Kept in sync (`candor kb unsync DIR|C123` stops one):")
            for s in syncs:
                print(f"  {s.kind:<13} {s.label}  ({s.scope}): {s.status()}")
            return 0
        if args.kb_command == "remove":
            removed = await kb.remove_source(args.source)
            if not removed:
                print(f"No source named {args.source}; `candor kb list` shows them.")
                return 1
            print(f"Removed {args.source} ({removed} chunks).")
            return 0
        if args.kb_command == "search":
            return await _search(kb, args)
        with Progress("reindexing", unit="chunk") as bar:
            done = await kb.reindex(progress=bar.update)
        print(f"Reindexed {done} chunks.")
        return 0
    finally:
        await kb.close()
        if client is not None:
            await client.close()


def _resolved(path: str) -> str:
    return str(Path(path).resolve())


def _check_sync_paths(paths: list[str]) -> None:
    for path in paths:
        if not Path(path).is_dir():
            raise ConfigError(f"--sync keeps folders in sync; {path} is not a folder.")


async def _database(settings: Settings) -> Any:
    from bot.db.engine import ensure_ready, open_database

    db = open_database(settings.database_url)
    try:
        await ensure_ready(db, migrate=db.is_sqlite)
    except BaseException:
        await db.dispose()
        raise
    return db


async def _syncs(settings: Settings) -> list[SyncSource]:
    """The registered sources, or none when the database cannot be read."""
    from bot.errors import CandorError
    from bot.jobs.sync import list_syncs

    try:
        db = await _database(settings)
    except CandorError:
        return []
    try:
        return await list_syncs(db)
    finally:
        await db.dispose()


async def _register(settings: Settings, scope: Any, snapshot: Any) -> None:
    """Register each folder for the `kb_sync` job with the files as they were ingested."""
    from bot.clock import SystemClock
    from bot.db.sync_models import SYNC_FOLDER
    from bot.jobs.sync import register

    db = await _database(settings)
    try:
        for root, (started, files) in snapshot.items():
            await register(
                db,
                kind=SYNC_FOLDER,
                target=root,
                scope=scope,
                label=root,
                now=SystemClock().now(),
                synced_at=started,
                state=files,
                registered_by="cli",
            )
            print(f"Keeping {root} in sync (`candor kb unsync {root}` stops it).")
    finally:
        await db.dispose()


async def _unsync(settings: Settings, target: str) -> int:
    from bot.db.sync_models import SYNC_FOLDER, SYNC_SLACK_CHANNEL
    from bot.jobs.sync import unregister

    db = await _database(settings)
    try:
        folder = await asyncio.to_thread(_resolved, target)
        if await unregister(db, kind=SYNC_FOLDER, target=folder) or await unregister(
            db, kind=SYNC_SLACK_CHANNEL, target=target
        ):
            print(f"Stopped syncing {target}; its knowledge stays (`candor kb remove` drops it).")
            return 0
    finally:
        await db.dispose()
    print(f"{target} is not kept in sync; `candor kb list` shows what is.")
    return 1


async def _add(kb: Any, paths: list[str], scope: Any, sync: Settings | None = None) -> int:
    from bot.clock import SystemClock
    from bot.jobs.sync import folder_files
    from knowledge import IngestProgress

    snapshot: dict[str, tuple[Any, dict[str, Any]]] = {}
    if sync is not None:
        # What the files look like before they are read: a file changed during the ingest
        # is read again by the first sync.
        for path in paths:
            root = await asyncio.to_thread(_resolved, path)
            files = await asyncio.to_thread(folder_files, Path(root))
            snapshot[root] = (SystemClock().now(), dict(files))
    with Progress("ingesting", unit="source") as bar:

        def progress(update: IngestProgress) -> None:
            bar.update(update.done, update.total)

        result = await kb.add_paths(paths, scope, progress=progress)
    added = sum(r.added for r in result.reports)
    removed = sum(r.removed for r in result.reports)
    unchanged = sum(r.unchanged for r in result.reports)
    print(
        f"{len(result.reports)} sources into {scope.key}: {added} chunks added, "
        f"{removed} removed, {unchanged} unchanged."
    )
    for skipped in result.skipped:
        print(f"  skipped {skipped.path}: {skipped.reason}")
    if sync is not None:
        await _register(sync, scope, snapshot)
    return 0 if result.reports or not result.skipped else 1


async def _search(kb: Any, args: argparse.Namespace) -> int:
    from knowledge import scopes_for_channel, scopes_for_dm

    allowed = (
        scopes_for_channel(args.channel, channel_private=True)
        if args.channel
        else scopes_for_dm(())
    )
    hits = await kb.search(args.query, allowed, limit=args.limit)
    for i, hit in enumerate(hits, start=1):
        if args.json:
            print(
                json.dumps(
                    {
                        "rank": i,
                        "score": hit.score,
                        "scores": hit.scores,
                        "source": hit.source,
                        "title": hit.title,
                        "link": hit.link,
                        "scope": hit.scope,
                        "text": hit.text,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            snippet = " ".join(hit.text.split())[:100]
            print(f"[{i}] {hit.score:7.3f}  {hit.title} ({hit.source})\n      {snippet}")
    if not hits and not args.json:
        print("No matching knowledge in the scopes this search may read.")
    return 0


class Progress:
    """A progress bar (tqdm) on the terminal, and nothing at all in pipes and logs.

    Shown only when both stdout and stderr are terminals, so `candor kb add ... > log`
    or a CI job never collects `\\r` frames. `update(done, total)` moves it to `done`.
    """

    def __init__(self, label: str, *, unit: str) -> None:
        self.label = label
        self.unit = unit
        self.enabled = sys.stdout.isatty() and sys.stderr.isatty()
        self._bar: Any = None

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            import shutil

            from tqdm import tqdm

            # A terminal that reports no width (a fresh pty) would get an empty bar.
            size = shutil.get_terminal_size((80, 24))
            self._bar = tqdm(
                total=total,
                desc=self.label,
                unit=self.unit,
                file=sys.stderr,
                ncols=size.columns,
                nrows=size.lines,
            )
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
