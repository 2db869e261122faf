"""bot-level admin logic: validation, rights and audit without Slack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from bot.admin import settings as v
from bot.admin.service import HOME_TEAM_KEY, AdminService
from bot.admin.settings import InvalidValue, Target
from bot.clock import FixedClock
from bot.deps import Deps


@pytest.mark.parametrize(
    ("parse", "raw", "expected"),
    [
        (v.parse_temperature, "0", 0.0),
        (v.parse_temperature, "2", 2.0),
        (v.parse_temperature, "0.7", 0.7),
        (v.parse_max_tokens, "1", 1),
        (v.parse_max_tokens, "32000", 32000),
        (v.parse_top_k, "20", 20),
        (v.parse_score_floor, "1", 1.0),
        (v.parse_system_message, "  Be kind.  ", "Be kind."),
    ],
)
def test_values_in_range_are_accepted(parse: Any, raw: str, expected: Any) -> None:
    assert parse(raw) == expected


@pytest.mark.parametrize(
    ("parse", "raw", "says"),
    [
        (v.parse_temperature, "-0.1", "from 0 to 2"),
        (v.parse_temperature, "nan", "from 0 to 2"),
        (v.parse_temperature, "inf", "from 0 to 2"),
        (v.parse_max_tokens, "1.5", "whole number from 1 to 32000"),
        (v.parse_top_k, "0", "from 1 to 20"),
        (v.parse_score_floor, "-1", "from 0 to 1"),
        (v.parse_system_message, "   ", "cannot be empty"),
        (v.parse_system_message, "x" * 3001, "the limit is 3000"),
    ],
)
def test_values_out_of_range_say_what_is_allowed(parse: Any, raw: str, says: str) -> None:
    with pytest.raises(InvalidValue) as err:
        parse(raw)
    assert says in err.value.user_message


def test_scopes_parse_commas_and_spaces_and_dedupe() -> None:
    assert v.parse_scopes(["workspace,channel:C1", "channel:C1", "Workspace"]) == [
        "workspace",
        "channel:C1",
    ]
    with pytest.raises(InvalidValue):
        v.parse_scopes(["channel:c1"])
    with pytest.raises(InvalidValue):
        v.parse_scopes([","])


def test_model_allowed_list(deps: Deps) -> None:
    assert v.parse_model("anything-goes", deps.settings) == "anything-goes"
    deps.settings.candor.allowed_models = "gpt-4o"
    with pytest.raises(InvalidValue, match="Allowed: gpt-4o"):
        v.parse_model("gpt-4o-mini", deps.settings)
    with pytest.raises(InvalidValue):
        v.parse_model("two words", deps.settings)


def test_field_names() -> None:
    assert v.field_name("max-tokens") == "max_answer_tokens"
    assert v.field_name("kb_score_floor") == "kb_score_floor"
    with pytest.raises(InvalidValue, match="Settings are"):
        v.field_name("colour")


async def test_slack_lookups_are_cached_for_a_few_minutes(deps: Deps, clock: FixedClock) -> None:
    service = AdminService(settings=deps.settings, db=deps.db, clock=clock)
    calls: list[str] = []
    facts = {"is_admin": True, "team_id": "T1"}

    async def lookup(user_id: str) -> Mapping[str, Any] | None:
        calls.append(user_id)
        return dict(facts)

    assert await service.is_admin("U1", lookup, team_id="T1")
    facts["is_admin"] = False
    assert await service.is_admin("U1", lookup, team_id="T1")
    assert len(calls) == 1
    clock.advance(minutes=6)
    assert not await service.is_admin("U1", lookup, team_id="T1")
    assert len(calls) == 2


async def test_guests_and_failed_lookups_are_never_admins(deps: Deps, clock: FixedClock) -> None:
    deps.settings.candor.admin_users = "UGUEST,UX"
    service = AdminService(settings=deps.settings, db=deps.db, clock=clock)

    async def guest(_user_id: str) -> Mapping[str, Any] | None:
        return {"is_owner": True, "is_ultra_restricted": True, "team_id": "T1"}

    async def broken(_user_id: str) -> Mapping[str, Any] | None:
        raise RuntimeError("slack down")

    assert not await service.is_admin("UGUEST", guest, team_id="T1")
    assert not await service.is_admin("UX", broken, team_id="T1")


async def test_only_members_of_the_installing_team_are_admins(
    deps: Deps, clock: FixedClock
) -> None:
    deps.settings.candor.admin_users = "UPARTNER"
    service = AdminService(settings=deps.settings, db=deps.db, clock=clock)
    people: dict[str, dict[str, Any]] = {
        "UHOME": {"is_admin": True, "team_id": "T1", HOME_TEAM_KEY: "T1"},
        "UGRID": {"is_admin": True, "team_id": "T2", "enterprise_user": {"teams": ["T1", "T2"]}},
        "UPARTNER": {"is_admin": True, "team_id": "T9", HOME_TEAM_KEY: "T1"},
        "USTRANGER": {"is_owner": True, "team_id": "T1", "is_stranger": True},
        "UNOTEAM": {"is_admin": True},
    }

    async def lookup(user_id: str) -> Mapping[str, Any] | None:
        return people[user_id]

    assert await service.is_admin("UHOME", lookup)  # the lookup names the home team
    assert await service.is_admin("UGRID", lookup, team_id="T1")  # same Grid org
    assert not await service.is_admin("UGRID", lookup)  # no team to check against
    assert not await service.is_admin("UPARTNER", lookup, team_id="T9")  # not Candor's team
    assert not await service.is_admin("USTRANGER", lookup, team_id="T1")
    assert not await service.is_admin("UNOTEAM", lookup, team_id="T1")


async def test_reasoning_model_warns_about_own_temperature(deps: Deps, clock: FixedClock) -> None:
    service = AdminService(settings=deps.settings, db=deps.db, clock=clock)
    target = Target("T1", "C1")
    await service.set_values(actor_id="UA", target=target, action="t", values={"temperature": 1.0})
    change = await service.set_values(
        actor_id="UA", target=target, action="m", values={"model": "o3"}
    )
    assert any("will be ignored" in w for w in change.warnings)
    with pytest.raises(InvalidValue, match="reasoning model"):
        await service.set_values(
            actor_id="UA", target=target, action="t", values={"temperature": 0.5}
        )
    view = await service.config(target)
    assert view.values["temperature"] == 1.0
