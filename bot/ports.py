"""The seams the conversation manager calls through: spend control and knowledge.

The manager depends on these protocols, not on their implementations, so the spend
ledger (`bot.spend.guard`) and the knowledge base (`knowledge/`, adapted in `bot.kb`) plug in
through `Deps`, and tests can hand in their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from bot.errors import CandorError

if TYPE_CHECKING:
    # Only a type here: importing bot.llm at run time would load the OpenAI SDK (~0.4 s)
    # for everything that needs only these seams, such as `candor kb search`.
    from bot.llm import Usage


class OverBudget(CandorError):
    """The user's budget for this period cannot cover the request."""

    def __init__(self, *, spent_usd: float, limit_usd: float, resets_at: datetime) -> None:
        when = resets_at.strftime("%Y-%m-%d %H:%M %Z").strip()
        super().__init__(
            f"over budget: {spent_usd:.4f} of {limit_usd:.2f}",
            user_message=(
                f"You have used ${spent_usd:.2f} of your ${limit_usd:.2f} budget for this period, "
                f"which is not enough for this request; it resets at {when}."
            ),
        )
        self.spent_usd = spent_usd
        self.limit_usd = limit_usd
        self.resets_at = resets_at


@dataclass(frozen=True)
class Reservation:
    """Money held for one call until it is settled or released."""

    id: int | None
    user_id: str
    amount_micro_usd: int
    notices: tuple[str, ...] = ()


class SpendGuard(Protocol):
    """Reserve before the LLM call, settle after it, release on failure."""

    async def reserve(
        self,
        *,
        workspace_id: str,
        channel_id: str,
        user_id: str,
        model: str,
        prompt_tokens: int,
        max_output_tokens: int,
        event_id: str | None,
    ) -> Reservation: ...

    async def settle(
        self,
        reservation: Reservation,
        *,
        model: str,
        usage: Usage,
        also: Callable[[Any], Awaitable[None]] | None = None,
        ahead: bool = True,
    ) -> None:
        """`also(session)` runs in the settle's own transaction, after the bill; `ahead`:
        the answer waits on the bill (False once it is shown)."""

    async def release(self, reservation: Reservation, *, reason: str) -> None: ...


@dataclass(frozen=True)
class RetrievedHit:
    """One knowledge chunk put in front of the model, numbered as a source."""

    index: int
    text: str
    title: str
    link: str
    source: str
    scope: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "title": self.title,
            "link": self.link,
            "source": self.source,
            "scope": self.scope,
            "score": self.score,
            "scores": dict(self.scores),
        }


@dataclass(frozen=True)
class RetrievalQuery:
    """One question to the knowledge base, with what decides the scopes it may read."""

    query: str
    #: The workspace the question came from; the asker must be a full member of it.
    workspace_id: str
    channel_id: str
    user_id: str
    is_dm: bool
    #: The channel's `kb_scopes`; `scopes_inherited` when they come from the workspace
    #: default rather than from the channel itself (shared channels and outsiders only
    #: get scopes granted to the channel itself).
    scopes: tuple[str, ...]
    top_k: int
    score_floor: float
    scopes_inherited: bool = True


class NoKnowledgeInScope(Exception):
    """Not a failure: the scopes this question may read hold no knowledge at all (a fresh
    install, nothing ingested for the workspace, this channel or its grants). Raised by
    `KnowledgeSource.retrieve` instead of returning no hits, so the confidence core treats
    it as "no knowledge base", not as "searched, and nothing covers this"."""


class KnowledgeSource(Protocol):
    """Retrieves chunks the asking user may see, never across scopes."""

    async def retrieve(self, query: RetrievalQuery) -> list[RetrievedHit]:
        """The hits, best first; raises `NoKnowledgeInScope` when there was nothing to
        search (a source that never raises it always counts as having knowledge)."""
        ...
