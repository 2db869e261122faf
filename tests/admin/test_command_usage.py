"""`/candor help` is written from the registered subcommands, so it cannot fall behind them."""

from __future__ import annotations

import pytest

from bot.admin.service import NOT_ADMIN
from handlers.commands import REGISTRY, USAGE
from handlers.commands.base import Invocation, Registry, Subcommand
from tests.admin.conftest import MEMBER, AdminHarness

#: Every subcommand `/candor` has today. A subcommand written but not registered, or
#: dropped from the registry by accident, fails here rather than vanishing from Slack.
TODAY = (
    "help",
    "config",
    "system",
    "temperature",
    "model",
    "max-tokens",
    "enable",
    "disable",
    "kb",
    "reset",
    "admins",
    "audit",
    "budget",
    "prices",
    "usage",
    "experts",
    "review-channel",
    "redact",
    "strict",
    "judge",
    "flag-threshold",
    "tools",
    "catchup",
    "image-model",
    "image-price",
)


async def test_usage_lists_every_registered_subcommand(harness: AdminHarness) -> None:
    assert {sub.name for sub in REGISTRY} == set(TODAY)
    shown = await harness.command("help", user=MEMBER)
    assert shown == USAGE
    lines = shown.splitlines()
    for name in TODAY:
        assert any(line.startswith(f"• `{name}") for line in lines), name
    for sub in REGISTRY:
        for form in sub.forms:
            assert f"`{form}`" in shown, form
    # The syntax today's text gave for the settings admins use most is still there.
    assert "`temperature 0.7 [#channel]`" in shown
    assert "`kb ingest [#channel]`" in shown and "`kb remove SOURCE`" in shown
    assert "fields: system, temperature, model, max-tokens, enabled, kb-scopes" in shown
    assert "Anyone may run `catchup`, `help` and `usage`" in shown


async def test_unknown_or_missing_subcommand_gets_the_usage_text(harness: AdminHarness) -> None:
    assert (
        await harness.command("frobnicate", user=MEMBER) == f"I don't know `frobnicate`.\n{USAGE}"
    )
    assert await harness.command("") == USAGE


async def test_only_help_usage_and_catchup_are_public(harness: AdminHarness) -> None:
    assert REGISTRY.public == {"help", "usage", "catchup"}
    for name in TODAY:
        reply = await harness.command(name, user=MEMBER)
        if name in REGISTRY.public:
            assert reply != NOT_ADMIN, name
        else:
            assert reply == NOT_ADMIN, name


async def _noop(_call: Invocation) -> str:
    return ""


def test_registry_refuses_a_name_twice_or_a_form_under_another_name() -> None:
    ok = Subcommand("ping", ("ping [#channel]",), _noop)
    with pytest.raises(ValueError, match="twice"):
        Registry((ok,), (ok,))
    with pytest.raises(ValueError, match="start with its name"):
        Registry((Subcommand("ping", ("pong",), _noop),))
