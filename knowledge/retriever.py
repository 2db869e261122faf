"""Retrieval: dense, sparse, or hybrid with a calibrated score fusion; duplicates collapsed.

Each configured embedder is one retriever: it embeds the query and asks the store for
its top candidates *with the scope filter in the store query*. Then:

1. **Fusion** (two retrievers). Each candidate's raw scores are mapped to [0, 1] with
   fixed, query-independent functions — cosine ``c`` as ``max(0, c)``; BM25 ``s`` as
   ``s / (s + sparse_scale * n)`` with ``n`` the number of query terms (saturating: half
   way when each term contributes ``sparse_scale``) — and combined as
   ``dense_weight * dense + (1 - dense_weight) * sparse``. Unlike rank fusion (RRF) or
   per-query normalisation (DBSF), the fused value means the same thing for every query,
   so a low top score says "nothing relevant" (``candor kb eval`` measures how well).
   A candidate one retriever did not return gets that retriever's lowest returned
   score (its true score is at most that).
2. **Duplicates.** Chunks with the same or nearly the same text (word-trigram Jaccard
   ≥ ``dedupe_threshold``, heading lines ignored) are one hit: the best-ranked one, with
   every chunk's source kept in :attr:`Hit.sources` (:func:`select`).
3. **Diversity.** At most ``per_source`` hits of one source in the top ``top_k`` while
   other sources have candidates; the rest follow if there is room.

A :class:`Hit` keeps ``scores`` (raw similarity per retriever that found the chunk:
cosine for dense, BM25 for sparse), ``score`` (the raw similarity of the first
configured retriever — what confidence checks and score floors read) and
``rank_score`` (the fused value in [0, 1] with two retrievers, else the raw score).
``score_floor`` drops candidates below a raw similarity, per retriever, before fusion.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from knowledge.embedders import Embedder, Embedding, SparseVector
from knowledge.scopes import AllowedScopes
from knowledge.store import StoreHit, VectorStore

ScoreFloor = float | Mapping[str, float] | None


@dataclass(frozen=True)
class SourceRef:
    """One place a hit's text was found: source, title, link, scope and chunk id."""

    source: str
    title: str
    link: str
    scope: str
    chunk_id: str


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk, with raw similarities and the fused rank score kept apart.

    ``sources`` lists every source that holds this text (duplicates collapsed), this
    hit's own first."""

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
    sources: tuple[SourceRef, ...] = ()

    def ref(self) -> SourceRef:
        return SourceRef(self.source, self.title, self.link, self.scope, self.chunk_id)


def _floor_for(floor: ScoreFloor, kind: str) -> float | None:
    if floor is None:
        return None
    if isinstance(floor, Mapping):
        return floor.get(kind)
    return float(floor)


def _hit(store_hit: StoreHit, kind: str) -> Hit:
    p = store_hit.payload
    hit = Hit(
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
    return replace(hit, sources=(hit.ref(),))


_WORD = re.compile(r"\w+")


def _body_words(hit: Hit) -> list[str]:
    """The chunk's words, lower-cased, without the heading line (which names the source)."""
    text = hit.text.split("\n", 1)[1] if hit.headings and "\n" in hit.text else hit.text
    return _WORD.findall(text.lower())


def _shingles(words: list[str]) -> frozenset[tuple[str, ...]]:
    if len(words) < 3:
        return frozenset([tuple(words)])
    return frozenset(zip(words, words[1:], words[2:], strict=False))


def _merge(into: Hit, other: Hit) -> Hit:
    known = {s.chunk_id for s in into.sources}
    return replace(
        into, sources=into.sources + tuple(s for s in other.sources if s.chunk_id not in known)
    )


def select(
    hits: Sequence[Hit], top_k: int, per_source: int = 1, threshold: float = 0.8
) -> list[Hit]:
    """The top ``top_k`` of ranked ``hits``, duplicates collapsed and sources diversified.

    A hit whose text equals, or nearly equals (word-trigram Jaccard ≥ ``threshold``), a
    better-ranked one is merged into it: one hit, every source kept in ``sources``. A
    source gets at most ``per_source`` of the top ``top_k`` while other sources have
    candidates (``per_source <= 0``: no limit); the rest fill any room left. Once the top
    ``top_k`` is chosen, the remaining candidates are only checked for exact copies
    (a dictionary lookup), so the near-duplicate comparisons stay few.
    """
    kept: list[Hit] = []
    grams: list[frozenset[tuple[str, ...]]] = []
    exact: dict[str, int] = {}
    chosen: list[int] = []
    held: list[int] = []
    per: dict[str, int] = {}
    for hit in hits:
        words = _body_words(hit)
        key = " ".join(words)
        n = exact.get(key)
        if n is None and len(chosen) < top_k:
            mine = _shingles(words)
            for i, other in enumerate(grams):
                union = len(mine | other)
                if union and len(mine & other) / union >= threshold:
                    n = i
                    break
            if n is None:
                n = len(kept)
                kept.append(hit)
                grams.append(mine)
                exact[key] = n
                if per_source <= 0 or per.get(hit.source, 0) < per_source:
                    chosen.append(n)
                    per[hit.source] = per.get(hit.source, 0) + 1
                else:
                    held.append(n)
                continue
        if n is not None:
            kept[n] = _merge(kept[n], hit)
    order = chosen + held[: max(0, top_k - len(chosen))]
    return [kept[i] for i in order]


class Retriever:
    """Embeds a query with each configured embedder and searches the store within allowed scopes."""

    def __init__(
        self,
        store: VectorStore,
        embedders: Sequence[Embedder],
        *,
        candidates: int = 30,  # per retriever when fusing; one retriever asks for 3 * top_k
        dense_weight: float = 0.5,
        sparse_scale: float = 3.0,
        dedupe_threshold: float = 0.8,
        per_source: int = 1,
    ) -> None:
        kinds = [e.kind for e in embedders]
        if not embedders or len(set(kinds)) != len(kinds):
            raise ValueError("Configure one or two embedders: at most one dense and one sparse.")
        self.store = store
        self.embedders = list(embedders)
        self.candidates = candidates
        self.dense_weight = dense_weight
        self.sparse_scale = sparse_scale
        self.dedupe_threshold = dedupe_threshold
        self.per_source = per_source

    async def _one(
        self, embedder: Embedder, query: str, scopes: AllowedScopes, limit: int
    ) -> tuple[Embedding, list[StoreHit]]:
        vector = await embedder.embed_query(query)
        hits = await self.store.search(embedder.kind, embedder.name, vector, scopes, limit)
        return vector, hits

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
        # more candidates than asked for: duplicates and same-source hits are set aside
        limit = max(top_k * 3, self.candidates if len(self.embedders) > 1 else 0)
        results = await asyncio.gather(
            *(self._one(e, query, allowed_scopes, limit) for e in self.embedders)
        )
        ranked: list[list[Hit]] = []
        query_terms = 1
        for embedder, (vector, hits) in zip(self.embedders, results, strict=True):
            if isinstance(vector, SparseVector):
                query_terms = max(1, len(vector.indices))
            floor = _floor_for(score_floor, embedder.kind)
            ranked.append(
                [_hit(h, embedder.kind) for h in hits if floor is None or h.score >= floor]
            )
        merged = ranked[0] if len(ranked) == 1 else self._fuse(ranked, query_terms)
        return select(merged, top_k, self.per_source, self.dedupe_threshold)

    def normalized(self, kind: str, raw: float, query_terms: int) -> float:
        """A raw score mapped to [0, 1] the same way for every query (see the module docstring)."""
        if kind == "dense":
            return max(0.0, min(1.0, raw))
        raw = max(0.0, raw)
        return raw / (raw + self.sparse_scale * query_terms)

    def _fuse(self, ranked: list[list[Hit]], query_terms: int) -> list[Hit]:
        first: dict[str, Hit] = {}
        scores: dict[str, dict[str, float]] = {}
        floors: dict[str, float] = {}
        for hits in ranked:  # in configured order, so ``first`` is the primary retriever's hit
            for hit in hits:
                first.setdefault(hit.chunk_id, hit)
                scores.setdefault(hit.chunk_id, {}).update(hit.scores)
            if hits:
                floors[hits[0].retriever] = min(h.score for h in hits)
        weights = {"dense": self.dense_weight, "sparse": 1.0 - self.dense_weight}
        out: list[Hit] = []
        for cid, hit in first.items():
            raw = scores[cid]
            fused = 0.0
            for kind, weight in weights.items():
                value = raw.get(kind, floors.get(kind, 0.0))
                fused += weight * self.normalized(kind, value, query_terms)
            out.append(replace(hit, scores=raw, rank_score=fused))
        return sorted(out, key=lambda h: (-h.rank_score, h.chunk_id))
