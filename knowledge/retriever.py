"""Retrieval: dense, sparse, or hybrid fused with Reciprocal Rank Fusion.

Each configured embedder is one retriever: it embeds the query and asks the
store for its top candidates *with the scope filter in the store query*. With
two retrievers the ranked lists are fused with RRF (``sum 1 / (k + rank)``).

An RRF value ranks results but is not a similarity, so a :class:`Hit` keeps
both: ``rank_score`` (the fused value, or the raw score for one retriever) and
``scores`` (raw similarity per retriever that found the chunk: cosine for
dense, BM25 for sparse). ``score`` is the raw similarity of the first
configured retriever that found the hit — what confidence checks should read.
``score_floor`` drops candidates below a raw similarity, per retriever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from knowledge.embedders import Embedder
from knowledge.scopes import AllowedScopes
from knowledge.store import StoreHit, VectorStore

ScoreFloor = float | Mapping[str, float] | None


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk, with raw similarities and the fused rank score kept apart."""

    chunk_id: str
    text: str
    source: str
    title: str
    link: str
    scope: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    rank_score: float = 0.0
    headings: tuple[str, ...] = ()
    retriever: str = ""


def _floor_for(floor: ScoreFloor, kind: str) -> float | None:
    if floor is None:
        return None
    if isinstance(floor, Mapping):
        return floor.get(kind)
    return float(floor)


def _hit(store_hit: StoreHit, kind: str) -> Hit:
    p = store_hit.payload
    return Hit(
        chunk_id=store_hit.id,
        text=str(p.get("text", "")),
        source=str(p.get("source", "")),
        title=str(p.get("title", "")),
        link=str(p.get("link", "")),
        scope=str(p.get("scope", "")),
        score=store_hit.score,
        scores={kind: store_hit.score},
        rank_score=store_hit.score,
        headings=tuple(str(h) for h in p.get("headings") or ()),
        retriever=kind,
    )


class Retriever:
    """Embeds a query with each configured embedder and searches the store within allowed scopes."""

    def __init__(
        self,
        store: VectorStore,
        embedders: Sequence[Embedder],
        *,
        rrf_k: int = 60,
        candidates: int = 20,
    ) -> None:
        kinds = [e.kind for e in embedders]
        if not embedders or len(set(kinds)) != len(kinds):
            raise ValueError("Configure one or two embedders: at most one dense and one sparse.")
        self.store = store
        self.embedders = list(embedders)
        self.rrf_k = rrf_k
        self.candidates = candidates

    async def _one(
        self, embedder: Embedder, query: str, scopes: AllowedScopes, limit: int
    ) -> list[StoreHit]:
        vector = await embedder.embed_query(query)
        return await self.store.search(embedder.kind, embedder.name, vector, scopes, limit)

    async def search(
        self,
        query: str,
        allowed_scopes: AllowedScopes,
        *,
        top_k: int = 5,
        score_floor: ScoreFloor = None,
    ) -> list[Hit]:
        """Top ``top_k`` chunks for ``query`` readable under ``allowed_scopes``.

        ``score_floor`` is a raw similarity: one number for every retriever, or
        a mapping like ``{"dense": 0.3, "sparse": 2.0}``.
        """
        if not query.strip() or not allowed_scopes.keys or top_k <= 0:
            return []
        limit = top_k if len(self.embedders) == 1 else max(top_k, self.candidates)
        results = await asyncio.gather(
            *(self._one(e, query, allowed_scopes, limit) for e in self.embedders)
        )
        ranked: list[list[Hit]] = []
        for embedder, hits in zip(self.embedders, results, strict=True):
            floor = _floor_for(score_floor, embedder.kind)
            ranked.append(
                [_hit(h, embedder.kind) for h in hits if floor is None or h.score >= floor]
            )
        if len(ranked) == 1:
            return ranked[0][:top_k]
        return self._fuse(ranked)[:top_k]

    def _fuse(self, ranked: list[list[Hit]]) -> list[Hit]:
        fused: dict[str, float] = {}
        scores: dict[str, dict[str, float]] = {}
        first: dict[str, Hit] = {}
        for hits in ranked:  # in configured order, so ``first`` is the primary retriever's hit
            for rank, hit in enumerate(hits, start=1):
                fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + 1.0 / (self.rrf_k + rank)
                scores.setdefault(hit.chunk_id, {}).update(hit.scores)
                first.setdefault(hit.chunk_id, hit)
        out = [
            Hit(
                chunk_id=cid,
                text=h.text,
                source=h.source,
                title=h.title,
                link=h.link,
                scope=h.scope,
                score=h.score,
                scores=scores[cid],
                rank_score=fused[cid],
                headings=h.headings,
                retriever=h.retriever,
            )
            for cid, h in first.items()
        ]
        return sorted(out, key=lambda h: (-h.rank_score, h.chunk_id))
