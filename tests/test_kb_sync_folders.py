"""A folder registered with `--sync`: the `kb_sync` job re-reads only the files that changed,
removes the sources of deleted files, and records the time (injected clock) and errors;
`candor kb add DIR --sync`, `kb list` and `kb unsync` from the command line."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.clock import FixedClock
from bot.db.sync_models import SYNC_FOLDER
from bot.deps import Deps
from bot.jobs.runner import JobRunner
from bot.jobs.sync import folder_files, list_syncs, register
from bot.kb import ScopedKnowledge
from bot.settings import Settings
from knowledge import Scope, scopes_for_dm
from tests.conftest import START


def write(path: Path, text: str, *, mtime: float) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


async def kb_sync(deps: Deps) -> str:
    outcome = await JobRunner(deps, holder="replica-a").run_now("kb_sync")
    assert outcome.ok, outcome.error
    return outcome.result


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    write(folder / "deploy.md", "# Deploys\n\nRoll back with `make rollback`.\n", mtime=1e9)
    write(folder / "lunch.md", "# Lunch\n\nLunch is served at noon.\n", mtime=1e9)
    write(folder / "vpn.md", "# VPN\n\nThe VPN host is vpn.example.com.\n", mtime=1e9)
    (folder / ".hidden").mkdir()
    write(folder / ".hidden" / "secret.md", "not for the knowledge base", mtime=1e9)
    return folder.resolve()


async def test_a_synced_folder_rereads_changed_files_and_drops_deleted_ones(
    deps: Deps, clock: FixedClock, docs: Path
) -> None:
    assert isinstance(deps.knowledge, ScopedKnowledge)
    kb = deps.knowledge.kb
    await register(
        deps.db,
        kind=SYNC_FOLDER,
        target=str(docs),
        scope=Scope.workspace(),
        now=START,
        synced_at=START,
        state=dict(folder_files(docs)),
    )
    await kb.add_paths([docs], Scope.workspace())
    write(docs / "lunch.md", "# Lunch\n\nLunch moved to 12:30 in the atrium.\n", mtime=2e9)
    (docs / "vpn.md").unlink()
    write(docs / "oncall.md", "# On-call\n\nThe rotation swaps on Tuesdays.\n", mtime=2e9)
    clock.advance(hours=1)

    assert await kb_sync(deps) == "1 sources synced, 0 failed"

    names = {Path(s.source.removeprefix("file:")).name for s in await kb.list_sources()}
    assert names == {"deploy.md", "lunch.md", "oncall.md"}
    [synced] = await list_syncs(deps.db)
    # The unchanged file was only stat'ed, not read again.
    assert synced.last_result == "2 files re-read, 1 removed, 1 unchanged"
    assert synced.last_synced_at == START + timedelta(hours=1)
    hits = await kb.search("when is lunch", scopes_for_dm(()), limit=1)
    assert "12:30 in the atrium" in hits[0].text

    # Nothing changed: nothing is read, nothing removed.
    clock.advance(hours=1)
    await kb_sync(deps)
    [synced] = await list_syncs(deps.db)
    assert synced.last_result == "0 files re-read, 0 removed, 3 unchanged"


async def test_a_vanished_folder_is_an_error_and_its_knowledge_stays(
    deps: Deps, clock: FixedClock, docs: Path
) -> None:
    assert isinstance(deps.knowledge, ScopedKnowledge)
    kb = deps.knowledge.kb
    await kb.add_paths([docs], Scope.workspace())
    await register(deps.db, kind=SYNC_FOLDER, target=str(docs), scope=Scope.workspace(), now=START)
    shutil.rmtree(docs)
    clock.advance(hours=1)

    assert await kb_sync(deps) == "0 sources synced, 1 failed"

    [synced] = await list_syncs(deps.db)
    assert synced.last_error == f"The folder {docs} does not exist (any more)."
    assert synced.last_synced_at is None
    assert len(await kb.list_sources()) == 3


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_kb_add_sync_registers_the_folder_list_shows_it_and_unsync_stops_it(
    settings: Settings, capsys: pytest.CaptureFixture[str], docs: Path
) -> None:
    assert await cli("kb", "add", str(docs), "--sync") == 0
    out = capsys.readouterr().out
    assert "3 sources into workspace" in out
    assert f"Keeping {docs} in sync (`candor kb unsync {docs}` stops it)." in out

    assert await cli("kb", "list") == 0
    listing = capsys.readouterr().out
    assert f"file:{docs / 'lunch.md'}" in listing
    assert "[synced: synced " in listing
    assert f"folder        {docs}  (workspace): synced " in listing

    assert await cli("kb", "unsync", str(docs)) == 0
    assert f"Stopped syncing {docs}" in capsys.readouterr().out
    assert await cli("kb", "list") == 0
    assert "synced" not in capsys.readouterr().out
    assert await cli("kb", "unsync", str(docs)) == 1


async def test_kb_add_sync_refuses_a_file(
    settings: Settings, capsys: pytest.CaptureFixture[str], docs: Path
) -> None:
    assert await cli("kb", "add", str(docs / "lunch.md"), "--sync") != 0
    assert "--sync keeps folders in sync" in capsys.readouterr().err
