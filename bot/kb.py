"""The knowledge base, as the conversation manager sees it: scoped retrieval.

`ScopedKnowledge` implements `bot.ports.KnowledgeSource` over `knowledge.KnowledgeBase`.
Scopes are a security boundary, decided here for every question:

- in a channel: the workspace scope, the channel's own scope, and the extra scopes an
  admin allowed for the channel (`/candor kb scopes`). An extra *private* channel's scope
  is only read when every member of the asking channel is also a member of it (checked
  through the `Directory`); otherwise it is dropped, and the log says why.
- in a DM: the workspace scope plus the channels the asking user is a member of,
  as Slack reports them at question time (cached briefly by the directory).

Without a directory (the CLI), nothing can be verified: a channel reads the workspace
and its own scope, a DM the workspace only. The filter is applied inside the vector
store's query (see `knowledge.scopes`), never after it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.errors import CandorError
from bot.ports import RetrievalQuery, RetrievedHit
from bot.settings import Settings
from bot.tokens import TokenCounter
from knowledge import (
    AllowedScopes,
    Embedder,
    EmbedderMismatch,
    Hit,
    KnowledgeBase,
    OpenAIEmbedder,
    Scope,
    ScopeError,
    SparseLexicalEmbedder,
    open_store,
    scopes_for_channel,
    scopes_for_dm,
)

log = logging.getLogger(__name__)


class KnowledgeUnavailable(CandorError):
    user_message = "I could not search the knowledge base just now, so this answer does not use it."


class Directory(Protocol):
    """What retrieval needs to know about Slack channels (the Slack surface provides it)."""

    async def is_private(self, channel_id: str) -> bool: ...

    async def members(self, channel_id: str) -> frozenset[str]: ...

    async def channels_of(self, user_id: str) -> frozenset[str]: ...


@dataclass
class ScopedKnowledge:
    """Retrieval that never crosses scopes; see the module docstring."""

    kb: KnowledgeBase
    directory: Directory | None = None

    async def allowed_scopes(self, query: RetrievalQuery) -> AllowedScopes:
        directory = self.directory
        if query.is_dm:
            channels = await directory.channels_of(query.user_id) if directory else frozenset()
            return scopes_for_dm(channels)
        private = await directory.is_private(query.channel_id) if directory else True
        extras: list[Scope] = []
        verified: list[str] = []
        for key in query.scopes:
            try:
                scope = Scope.parse(key)
            except ScopeError:
                log.warning(
                    "Ignoring the malformed knowledge scope %r of %s", key, query.channel_id
                )
                continue
            if scope.channel_id is None or scope.channel_id == query.channel_id:
                extras.append(scope)
                continue
            if directory is None:
                log.info("Cannot verify scope %s without Slack; skipping it.", key)
                continue
            other = scope.channel_id
            if await directory.is_private(other):
                scope = Scope.channel(other, private=True)
                asking = await directory.members(query.channel_id)
                if asking and asking <= await directory.members(other):
                    verified.append(other)
                else:
                    log.info(
                        "Not reading private %s from %s: not every member may see it.",
                        key,
                        query.channel_id,
                    )
            extras.append(scope)
        return scopes_for_channel(
            query.channel_id, channel_private=private, extra=extras, verified_private=verified
        )

    async def retrieve(self, query: RetrievalQuery) -> list[RetrievedHit]:
        try:
            allowed = await self.allowed_scopes(query)
        except Exception as exc:
            # Slack could not tell us who may see what: read only what needs no check.
            log.warning("Could not resolve knowledge scopes (%s); narrowing.", type(exc).__name__)
            allowed = (
                scopes_for_dm(())
                if query.is_dm
                else scopes_for_channel(query.channel_id, channel_private=True)
            )
        try:
            hits = await self.kb.search(
                query.query,
                allowed,
                limit=query.top_k,
                score_floor=query.score_floor or None,
            )
        except EmbedderMismatch as exc:
            raise KnowledgeUnavailable(
                str(exc),
                user_message=(
                    "I could not search the knowledge base: it was built with another "
                    "embedder, and an admin needs to run `candor kb reindex`."
                ),
            ) from None
        except Exception as exc:
            log.warning("Knowledge retrieval failed: %s", type(exc).__name__, exc_info=True)
            raise KnowledgeUnavailable(type(exc).__name__) from None
        return [_numbered(i, hit) for i, hit in enumerate(hits, start=1)]


def _numbered(index: int, hit: Hit) -> RetrievedHit:
    return RetrievedHit(
        index=index,
        text=hit.text,
        title=hit.title,
        link=hit.link,
        source=hit.source,
        scope=hit.scope,
        score=hit.score,
        scores=dict(hit.scores),
    )


def choose_embedders(settings: Settings, openai_client: object) -> list[Embedder]:
    """The embedders `CANDOR_KB_EMBEDDER` asks for (`auto`: see the README)."""
    choice = settings.candor.kb_embedder
    if choice == "auto":
        real_openai = settings.openai.api_key is not None and not settings.openai.base_url
        choice = "hybrid" if real_openai else "sparse"
    sparse = SparseLexicalEmbedder()
    if choice == "sparse":
        return [sparse]
    dense: Embedder
    if choice in ("openai", "hybrid"):
        dense = OpenAIEmbedder(openai_client, settings.openai.embedding_model)
    else:  # minilm
        from knowledge import MiniLMEmbedder

        dense = MiniLMEmbedder()
    return [dense] if choice in ("openai", "minilm") else [dense, sparse]


def build_knowledge_base(
    settings: Settings, tokens: TokenCounter, openai_client: object
) -> KnowledgeBase:
    """The knowledge base on the configured store (server, or embedded under the data dir)."""
    key = settings.qdrant.api_key.get_secret_value() if settings.qdrant.api_key else None
    path: Path = settings.qdrant_path
    store = open_store(
        url=settings.qdrant.url or None,
        api_key=key,
        path=str(path),
        collection=settings.qdrant.collection,
    )
    return KnowledgeBase(
        store,
        choose_embedders(settings, openai_client),
        count_tokens=tokens.counter_for("gpt-4o"),
    )
