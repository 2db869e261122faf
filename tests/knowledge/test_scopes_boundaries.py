"""The allowed-scope rules for public, shared and restricted askers (issue 9, 2.2 and 2.9)."""

from __future__ import annotations

from knowledge import Scope, scopes_for_channel

SECRET_ROOM = Scope.channel("G9", private=True)


def test_a_public_channel_never_reads_another_private_scope_even_if_verified() -> None:
    allowed = scopes_for_channel(
        "C1", channel_private=False, extra=[SECRET_ROOM], verified_private=["G9"]
    )
    assert allowed.keys == {"workspace", "channel:C1"}


def test_an_externally_shared_channel_reads_only_its_own_and_granted_scopes() -> None:
    allowed = scopes_for_channel(
        "G1",
        channel_private=True,
        extra=[SECRET_ROOM, Scope.channel("C2")],
        verified_private=["G9"],
        shared_externally=True,
    )
    assert allowed.keys == {"channel:G1", "channel:C2"}


def test_an_explicit_workspace_grant_is_honoured_without_the_implicit_one() -> None:
    allowed = scopes_for_channel(
        "C1", channel_private=False, extra=[Scope.workspace()], shared_externally=True
    )
    assert allowed.keys == {"workspace", "channel:C1"}
    assert scopes_for_channel("C1", channel_private=False, implicit_workspace=False).keys == {
        "channel:C1"
    }
