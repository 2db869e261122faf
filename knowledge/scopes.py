"""Knowledge scopes: who may see what was ingested.

Every chunk carries exactly one scope key in its payload:

* ``"workspace"`` — visible everywhere in the workspace;
* ``"channel:C123"`` — visible only where that channel's knowledge may be shown.

A channel scope also records whether the channel is public or private. The key
alone drives retrieval (the store filters on it with an exact keyword match);
visibility matters when *building* the allowed set, which is the security
boundary: a private channel's scope is only ever allowed in that channel itself,
or in another private, unshared channel whose members the caller has checked and
passes explicitly. A channel shared with another organization never reads the
workspace scope implicitly.

Allowed sets are built by :func:`scopes_for_channel` and :func:`scopes_for_dm`
and are handed to the store query as a payload filter; nothing is filtered after
the fact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Visibility = Literal["public", "private"]

WORKSPACE_KEY = "workspace"
_CHANNEL_ID = re.compile(r"^[A-Z0-9]{2,32}$")
_SCOPE_KEY = re.compile(r"^(workspace|channel:[A-Z0-9]{2,32})$")


class ScopeError(ValueError):
    """Raised for a malformed scope key or channel id."""


def validate_scope_key(key: str) -> str:
    """Return ``key`` if it is a well-formed scope key, else raise :class:`ScopeError`."""
    if not _SCOPE_KEY.match(key):
        raise ScopeError(
            f"{key!r} is not a valid scope key (expected 'workspace' or 'channel:<ID>')."
        )
    return key


@dataclass(frozen=True)
class Scope:
    """Where a piece of knowledge may be shown.

    Use :meth:`workspace` or :meth:`channel` to build one; ``key`` is what the
    store keeps in each chunk's payload.
    """

    channel_id: str | None = None
    visibility: Visibility = "public"

    def __post_init__(self) -> None:
        if self.channel_id is not None and not _CHANNEL_ID.match(self.channel_id):
            raise ScopeError(f"{self.channel_id!r} is not a valid Slack channel id.")
        if self.channel_id is None and self.visibility != "public":
            raise ScopeError("The workspace scope cannot be private.")

    @classmethod
    def workspace(cls) -> Scope:
        """The workspace-wide scope."""
        return cls(None, "public")

    @classmethod
    def channel(cls, channel_id: str, *, private: bool = False) -> Scope:
        """The scope of one channel, public unless ``private`` is true."""
        return cls(channel_id, "private" if private else "public")

    @classmethod
    def parse(cls, key: str, *, private: bool = False) -> Scope:
        """Build a scope from its key (``"workspace"`` or ``"channel:C123"``)."""
        validate_scope_key(key)
        if key == WORKSPACE_KEY:
            return cls.workspace()
        return cls.channel(key.split(":", 1)[1], private=private)

    @property
    def key(self) -> str:
        """The payload value stored with each chunk and matched at query time."""
        return WORKSPACE_KEY if self.channel_id is None else f"channel:{self.channel_id}"

    @property
    def is_private(self) -> bool:
        """True for a private channel's scope."""
        return self.visibility == "private"


@dataclass(frozen=True)
class AllowedScopes:
    """The exact set of scope keys one query may read. Build it with the helpers below."""

    keys: frozenset[str]

    def __post_init__(self) -> None:
        for key in self.keys:
            validate_scope_key(key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def sorted(self) -> list[str]:
        """The keys in a stable order (for filters and logs)."""
        return sorted(self.keys)


def scopes_for_channel(
    channel_id: str,
    *,
    channel_private: bool,
    extra: Iterable[Scope] = (),
    verified_private: Iterable[str] = (),
    shared_externally: bool = False,
    implicit_workspace: bool = True,
) -> AllowedScopes:
    """Scopes a question asked in ``channel_id`` may read.

    Always the asking channel; the workspace too, unless the channel is shared
    with another organization (``shared_externally``) or the caller turned
    ``implicit_workspace`` off (an asker who is not a full member of the
    workspace). ``extra`` are scopes an admin granted to this channel: the
    workspace and public channels are added as given; a *private* channel's
    scope other than the asking channel is added only when the asking channel
    is itself private and not shared externally, and its channel id is in
    ``verified_private`` — which the caller fills after checking that every
    member of the asking channel is a member of it. Anything else is dropped.
    """
    keys = {Scope.channel(channel_id, private=channel_private).key}
    if implicit_workspace and not shared_externally:
        keys.add(WORKSPACE_KEY)
    verified = set(verified_private)
    private_grants_possible = channel_private and not shared_externally
    for scope in extra:
        if scope.is_private and scope.channel_id != channel_id:
            if not private_grants_possible or scope.channel_id not in verified:
                continue
        keys.add(scope.key)
    return AllowedScopes(frozenset(keys))


def scopes_for_dm(member_channel_ids: Iterable[str]) -> AllowedScopes:
    """Scopes a direct message may read: the workspace plus channels the user is a member of.

    The caller passes the ids of channels the user belongs to (public or
    private), as reported by Slack at question time.
    """
    keys = {WORKSPACE_KEY}
    keys.update(Scope.channel(cid).key for cid in member_channel_ids)
    return AllowedScopes(frozenset(keys))
