"""The house rules on imports, checked on the source: one direction, and no circles.

`handlers/` -> `bot/` -> `knowledge/`; the CLI (`bot/cli/`) is the one composition root
and the only part of `bot/` that may import `handlers/`. A circle between two modules,
even one hidden under `TYPE_CHECKING` or inside a function, means a type or a helper both
sides need belongs below both.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "knowledge")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[str]:
    """Every project module `module` imports, wherever the import statement sits."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import mod` imports `pkg.mod`; `from mod import name` imports `mod`.
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in MODULES
                else node.module
                for alias in node.names
            ]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                # the deepest project module the name refers to
                while name and name not in MODULES:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    yield name


GRAPH = {module: set(_imports(module, path)) for module, path in MODULES.items()}


def test_the_walk_sees_the_whole_project() -> None:
    assert {"bot.conversation", "handlers.events", "knowledge.retriever"} <= set(MODULES)
    assert "bot.conversation" in GRAPH["handlers.events"]


def test_knowledge_imports_neither_bot_nor_handlers() -> None:
    wrong = {
        (m, i)
        for m, deps in GRAPH.items()
        if m.startswith("knowledge")
        for i in deps
        if i.startswith(("bot", "handlers"))
    }
    assert not wrong


def test_only_the_cli_in_bot_imports_handlers() -> None:
    wrong = {
        (m, i)
        for m, deps in GRAPH.items()
        if m.startswith("bot") and not m.startswith("bot.cli")
        for i in deps
        if i.startswith("handlers")
    }
    assert not wrong


def _cycle_from(start: str) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in GRAPH.get(node, ()):
            if nxt == start:
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_import_circles() -> None:
    circles = []
    for module in GRAPH:
        cycle = _cycle_from(module)
        if cycle:
            circles.append(" -> ".join(cycle))
    assert not circles, "\n".join(sorted(circles)[:10])
