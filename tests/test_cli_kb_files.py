"""`candor kb add` of a folder: each bad file is named with its reason, the good ones land.

`main()` runs its own event loop, so it runs in a worker thread (as in tests/test_cli.py).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.settings import Settings
from tests.knowledge.test_loaders import limit_pdf, make_pdf


async def kb(*argv: str) -> int:
    return await asyncio.to_thread(main, ["kb", *argv])


async def test_kb_add_names_each_bad_file_and_ingests_the_good_ones(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a-broken.pdf").write_bytes(limit_pdf())  # sorts first: it used to stop the batch
    (docs / "b-tool.md").write_bytes(b"\x7fELF\x02\x01\x01\x00" + os.urandom(4096))
    (docs / "c-manual.pdf").write_bytes(make_pdf(["Restart the pump with the red lever."]))
    (docs / "d-deploy.md").write_text("# Deploys\n\nRoll back with `make rollback`.\n")

    assert await kb("add", str(docs)) == 0
    out = capsys.readouterr().out
    assert "2 sources into workspace: 2 chunks added" in out
    assert (
        f"skipped {docs / 'a-broken.pdf'}: The PDF is malformed or too large to read safely." in out
    )
    assert f"skipped {docs / 'b-tool.md'}: The file is not text (it looks like binary data)." in out

    assert await kb("list") == 0
    listing = capsys.readouterr().out
    assert "c-manual.pdf" in listing and "d-deploy.md" in listing
    assert "a-broken" not in listing and "b-tool" not in listing
