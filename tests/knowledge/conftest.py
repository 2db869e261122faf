"""Fixtures for the knowledge tests: both embedded stores, a knowledge base, the corpus.

Every store-backed test runs on Qdrant Edge (the embedded default), on
qdrant-client's local mode (``:memory:``), and through the qdrant-client server
code path (``AsyncQdrantClient``, payload indexes) backed by an in-memory
engine, so every implementation keeps the same behaviour, scope filtering above all.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from knowledge import (
    Embedding,
    KnowledgeBase,
    Scope,
    SparseLexicalEmbedder,
    VectorStore,
    open_store,
)

CORPUS = Path(__file__).parent / "corpus"
PRIVATE = Scope.channel("CPRIV", private=True)
SALES = Scope.channel("CSALES")


class HashingDenseEmbedder:
    """A deterministic dense embedder for tests: hashed bag of words, L2-normalised."""

    kind = "dense"

    def __init__(self, dims: int = 64, name: str = "test-hash-dense") -> None:
        self.dimensions: int | None = dims
        self.name = name

    def _vec(self, text: str) -> list[float]:
        v = [0.0] * (self.dimensions or 64)
        for tok in re.findall(r"\w+", text.lower()):
            h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=4).digest(), "big")
            v[h % len(v)] += 1.0 if (h >> 16) & 1 else -1.0
        n = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / n for x in v]

    async def embed_documents(self, texts: Sequence[str]) -> list[Embedding]:
        return [self._vec(t) for t in texts]

    async def embed_query(self, text: str) -> Embedding:
        return self._vec(text)


def make_store(kind: str, tmp_path: Path, collection: str = "kb") -> VectorStore:
    if kind == "edge":
        return open_store(None, None, str(tmp_path / "qdrant"), collection)
    if kind == "qdrant-server-path":
        # the server code path (AsyncQdrantClient, payload indexes) over an in-process backend
        from qdrant_client import AsyncQdrantClient

        from knowledge.store_qdrant import QdrantClientStore

        client = AsyncQdrantClient(location=":memory:")
        return QdrantClientStore(client, collection, is_async=True, is_server=True)
    return open_store(None, None, ":memory:", collection, backend="qdrant-local")


@pytest.fixture(params=["edge", "qdrant-local", "qdrant-server-path"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(store_kind: str, tmp_path: Path) -> AsyncIterator[VectorStore]:
    s = make_store(store_kind, tmp_path)
    yield s
    await s.close()


@pytest.fixture
async def kb(store: VectorStore) -> KnowledgeBase:
    return KnowledgeBase(store, [SparseLexicalEmbedder()], chunk_size=120, chunk_overlap=20)


@pytest.fixture
async def corpus_kb(kb: KnowledgeBase) -> KnowledgeBase:
    """The corpus ingested: handbook workspace-wide, sales in #sales, Nightingale in a private channel."""
    await kb.add_paths([CORPUS / "handbook"], Scope.workspace())
    await kb.add_paths([CORPUS / "sales"], SALES)
    await kb.add_paths([CORPUS / "private"], PRIVATE)
    return kb


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The server code path over local mode warns that payload indexes do nothing there."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore:Payload indexes have no effect"))
