"""`candor serve` runs on uvloop when it is there (`CANDOR_EVENT_LOOP`), and the front
desk's thread on a loop of the same kind; other commands stay on asyncio's loop."""

from __future__ import annotations

import argparse
import asyncio
import sys

import pytest
import uvloop

from bot.cli.main import _run
from bot.settings import ConfigError, load_settings
from handlers.front_desk import FrontDesk


async def _loop_kind() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def _kind_for(command: str) -> str:
    return _run(_loop_kind(), argparse.Namespace(command=command), load_settings())  # type: ignore[arg-type,return-value]


def test_serve_runs_on_uvloop_by_default_and_other_commands_on_asyncio() -> None:
    assert _kind_for("serve") == "uvloop"
    assert _kind_for("chat") == "asyncio"


def test_candor_event_loop_asyncio_keeps_the_standard_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CANDOR_EVENT_LOOP", "asyncio")
    assert _kind_for("serve") == "asyncio"


def test_uvloop_asked_for_but_missing_is_one_clear_sentence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` fails
    monkeypatch.setenv("CANDOR_EVENT_LOOP", "auto")
    assert _kind_for("serve") == "asyncio"  # auto falls back quietly
    monkeypatch.setenv("CANDOR_EVENT_LOOP", "uvloop")
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        _kind_for("serve")


def test_an_unknown_event_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANDOR_EVENT_LOOP", "trio")
    with pytest.raises(ConfigError, match="CANDOR_EVENT_LOOP"):
        load_settings()


def test_the_front_desk_runs_a_loop_of_the_main_loops_kind() -> None:
    async def desk_kind() -> tuple[str, str]:
        desk = FrontDesk(asyncio.get_running_loop())
        try:
            return await _loop_kind(), await desk.run(_loop_kind())
        finally:
            await desk.close()

    assert uvloop.run(desk_kind()) == ("uvloop", "uvloop")
    assert asyncio.run(desk_kind()) == ("asyncio", "asyncio")
