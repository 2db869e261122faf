"""Pick and open a vector store: the factory, kept apart from the `VectorStore` protocol.

`knowledge.store` defines what a store is; `store_edge` and `store_qdrant` implement it
and import `knowledge.store`. The factory needs both implementations, so it lives here,
above all three, and no import circle runs through the protocol module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from knowledge.store import StoreError, VectorStore


def open_store(
    url: str | None,
    api_key: str | None,
    path: str | None,
    collection: str,
    *,
    backend: Literal["auto", "edge", "qdrant-local"] = "auto",
) -> VectorStore:
    """Open the vector store for ``collection``.

    ``url`` set: a Qdrant server or cluster through ``qdrant-client``. Otherwise
    an embedded store under ``path`` (default ``./data/qdrant``): Qdrant Edge
    unless ``backend="qdrant-local"`` asks for qdrant-client's local mode
    (which also accepts ``path=":memory:"``).
    """
    if url:
        from knowledge.store_qdrant import QdrantClientStore

        return QdrantClientStore.server(url, api_key, collection)
    if backend == "qdrant-local":
        from knowledge.store_qdrant import QdrantClientStore

        return QdrantClientStore.local(path or ":memory:", collection)
    if path == ":memory:":
        raise StoreError("The embedded Qdrant Edge store needs a directory path, not ':memory:'.")
    from knowledge.store_edge import EdgeStore

    return EdgeStore(Path(path or "./data/qdrant"), collection)
