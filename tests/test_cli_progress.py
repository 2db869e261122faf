"""`candor kb add` shows a progress bar on a terminal and none in pipes or logs."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from pathlib import Path

from bot.cli.main import main
from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _docs(tmp_path: Path, n: int = 5) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(n):
        (docs / f"note-{i}.md").write_text(f"# Note {i}\n\nThe pump number {i} restarts.\n")
    return docs


async def test_no_progress_frames_when_output_is_not_a_terminal(
    settings: Settings, tmp_path: Path, capfd: object
) -> None:
    docs = _docs(tmp_path)
    assert await asyncio.to_thread(main, ["kb", "add", str(docs)]) == 0
    out, err = capfd.readouterr()  # type: ignore[attr-defined]
    assert "5 sources into workspace" in out
    assert "\r" not in out and "\r" not in err
    assert "ingesting" not in err


def test_a_terminal_gets_a_progress_bar(settings: Settings, tmp_path: Path) -> None:
    docs = _docs(tmp_path)
    primary, secondary = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli.main", "kb", "add", str(docs)],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        cwd=tmp_path,
        env=env,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 4096)
        except OSError:  # the pty closes when the child exits
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait(timeout=60)
    os.close(primary)
    screen = b"".join(chunks).decode(errors="replace")
    assert code == 0, screen
    assert "ingesting" in screen and "5/5" in screen
    assert "5 sources into workspace" in screen
