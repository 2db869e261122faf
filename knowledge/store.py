"""The vector store interface, its value types and the factory.

One :class:`VectorStore` Protocol, two implementations:

* :class:`knowledge.store_edge.EdgeStore` — ``qdrant-edge-py``, Qdrant's
  in-process engine. The embedded default: a filtered top-5 query over 100k
  chunks takes about a millisecond (numbers in ``knowledge/NOTES.md``).
* :class:`knowledge.store_qdrant.QdrantClientStore` — ``qdrant-client``
  against a Qdrant server or cluster (``url``), or its pure-Python local mode
  (``path`` / ``":memory:"``), which is kept for comparison and small setups
  but is ~100x slower on filtered sparse queries.

A collection has up to two named vectors, ``"dense"`` and ``"sparse"``, and
records which embedder built each (:class:`CollectionSpec`). Querying a vector
with a different embedder raises :class:`EmbedderMismatch`: vectors from two
models are not comparable, and silently mixing them returns nonsense.

Every search takes an :class:`~knowledge.scopes.AllowedScopes` and turns it
into a payload filter *in the store query*; an empty set returns nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from knowledge.embedders import Embedding
from knowledge.scopes import AllowedScopes

VectorKind = Literal["dense", "sparse"]
SCOPE_FIELD = "scope"
SOURCE_FIELD = "source"


class EmbedderMismatch(RuntimeError):
    """The collection was built with a different embedder than the one querying or writing it."""


class StoreError(RuntimeError):
    """A vector store operation failed; the message says which and why."""


@dataclass(frozen=True)
class VectorSpec:
    """One named vector of a collection and the embedder that fills it."""

    name: VectorKind
    embedder: str
    size: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "embedder": self.embedder, "size": self.size}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VectorSpec:
        size = data.get("size")
        return cls(
            name=data["name"],
            embedder=str(data["embedder"]),
            size=int(size) if size is not None else None,
        )


@dataclass(frozen=True)
class CollectionSpec:
    """The vectors a collection holds; compared on every write and query."""

    vectors: tuple[VectorSpec, ...]

    def get(self, name: str) -> VectorSpec | None:
        return next((v for v in self.vectors if v.name == name), None)

    def describe(self) -> str:
        return ", ".join(f"{v.name}={v.embedder}" for v in self.vectors) or "no vectors"

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "vectors": [v.to_json() for v in self.vectors]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CollectionSpec:
        return cls(tuple(VectorSpec.from_json(v) for v in data.get("vectors", [])))


def check_spec(collection: str, existing: CollectionSpec, wanted: CollectionSpec) -> None:
    """Raise :class:`EmbedderMismatch` unless ``wanted`` matches what the collection was built with."""
    if {(v.name, v.embedder) for v in existing.vectors} != {
        (v.name, v.embedder) for v in wanted.vectors
    }:
        raise EmbedderMismatch(
            f"The knowledge collection '{collection}' was built with [{existing.describe()}] but the bot is "
            f"configured with [{wanted.describe()}]; run a reindex to rebuild it."
        )


def check_query(collection: str, spec: CollectionSpec, using: VectorKind, embedder: str) -> None:
    """Raise :class:`EmbedderMismatch` if vector ``using`` was not built by ``embedder``."""
    vector = spec.get(using)
    if vector is None or vector.embedder != embedder:
        raise EmbedderMismatch(
            f"The knowledge collection '{collection}' was built with [{spec.describe()}] and cannot be "
            f"searched with {using}={embedder}; run a reindex to rebuild it."
        )


@dataclass(frozen=True)
class ChunkRecord:
    """A chunk as written to the store: id, payload and one vector per name."""

    id: str
    payload: Mapping[str, Any]
    vectors: Mapping[str, Embedding]


@dataclass(frozen=True)
class StoreHit:
    """A raw search result: id, the retriever's raw similarity and the payload."""

    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class SourceInfo:
    """One ingested source and how many chunks it has."""

    source: str
    chunks: int
    title: str = ""
    link: str = ""
    scope: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


class VectorStore(Protocol):
    """What the knowledge base needs from a vector store. All methods are safe to await on the event loop."""

    collection: str

    async def get_spec(self) -> CollectionSpec | None:
        """The spec the collection was built with, or ``None`` if it does not exist yet."""
        ...

    async def ensure_collection(self, spec: CollectionSpec) -> None:
        """Create the collection if missing; raise :class:`EmbedderMismatch` if it exists with another spec."""
        ...

    async def recreate(self, spec: CollectionSpec) -> None:
        """Drop the collection (if any) and create it empty with ``spec``."""
        ...

    def staging(self) -> VectorStore:
        """A store for a scratch collection next to this one, where a reindex is built."""
        ...

    async def replace_with(self, staged: VectorStore) -> None:
        """Make ``staged`` (from :meth:`staging`) this collection's contents, then drop it."""
        ...

    async def drop(self) -> None:
        """Delete the collection and everything in it."""
        ...

    async def upsert(self, records: Sequence[ChunkRecord]) -> None: ...

    async def ids_for_source(self, source: str) -> set[str]: ...

    async def delete_ids(self, ids: Sequence[str]) -> None: ...

    async def delete_source(self, source: str) -> int:
        """Delete every chunk of ``source``; return how many there were."""
        ...

    async def list_sources(self) -> list[SourceInfo]: ...

    async def count(self) -> int: ...

    async def has_any(self, scopes: AllowedScopes) -> bool:
        """Whether any chunk lies in ``scopes`` (the filter inside the store query, as for
        :meth:`search`): tells "nothing matched" from "there is nothing to search"."""
        ...

    def scroll_payloads(
        self, batch_size: int = 512
    ) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
        """Yield ``(id, payload)`` batches of every chunk (used by reindex)."""
        ...

    async def search(
        self, using: VectorKind, embedder: str, vector: Embedding, scopes: AllowedScopes, limit: int
    ) -> list[StoreHit]:
        """Top ``limit`` chunks by raw similarity on vector ``using``, restricted to ``scopes`` in the query."""
        ...

    async def optimize(self) -> None:
        """Let the engine build its indexes after a bulk load (no-op where the server does it)."""
        ...

    async def close(self) -> None: ...
