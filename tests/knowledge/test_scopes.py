"""Allowed-scope building: the rules that decide which knowledge a question may read."""

from __future__ import annotations

import pytest

from knowledge import AllowedScopes, Scope, ScopeError, scopes_for_channel, scopes_for_dm


def test_channel_question_reads_workspace_and_its_own_channel() -> None:
    allowed = scopes_for_channel("C1", channel_private=False)
    assert allowed.keys == {"workspace", "channel:C1"}


def test_private_channel_reads_its_own_private_scope() -> None:
    allowed = scopes_for_channel("G1", channel_private=True)
    assert allowed.keys == {"workspace", "channel:G1"}


def test_admin_extra_public_scope_is_added() -> None:
    allowed = scopes_for_channel("C1", channel_private=False, extra=[Scope.channel("C2")])
    assert "channel:C2" in allowed


def test_admin_extra_private_scope_is_dropped_without_membership_check() -> None:
    allowed = scopes_for_channel(
        "C1", channel_private=False, extra=[Scope.channel("G9", private=True)]
    )
    assert "channel:G9" not in allowed
    assert allowed.keys == {"workspace", "channel:C1"}


def test_extra_private_scope_is_added_only_when_verified() -> None:
    allowed = scopes_for_channel(
        "G1",
        channel_private=True,
        extra=[Scope.channel("G9", private=True), Scope.channel("G8", private=True)],
        verified_private=["G9"],
    )
    assert "channel:G9" in allowed
    assert "channel:G8" not in allowed


def test_dm_reads_workspace_and_member_channels_only() -> None:
    allowed = scopes_for_dm(["C1", "G2"])
    assert allowed.keys == {"workspace", "channel:C1", "channel:G2"}
    assert scopes_for_dm([]).keys == {"workspace"}


@pytest.mark.parametrize(
    "bad", ["channel:*", "channel:C1 OR 1=1", "scope", "channel:", "Channel:C1", ""]
)
def test_malformed_scope_keys_are_rejected(bad: str) -> None:
    with pytest.raises(ScopeError):
        AllowedScopes(frozenset({bad}))


@pytest.mark.parametrize("bad", ["c1", "C1}", "C1,C2", "../x", ""])
def test_malformed_channel_ids_are_rejected(bad: str) -> None:
    with pytest.raises(ScopeError):
        Scope.channel(bad)
    with pytest.raises(ScopeError):
        scopes_for_dm([bad])


def test_scope_keys_and_parse_round_trip() -> None:
    assert Scope.workspace().key == "workspace"
    assert Scope.channel("C1", private=True).key == "channel:C1"
    assert Scope.parse("channel:C1", private=True) == Scope.channel("C1", private=True)
    with pytest.raises(ScopeError):
        Scope(None, "private")
