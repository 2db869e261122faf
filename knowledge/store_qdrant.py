"""Vector store on ``qdrant-client``: a Qdrant server/cluster, or the client's local mode.

With a ``url`` the store uses ``AsyncQdrantClient`` (true async HTTP/gRPC) and
creates keyword payload indexes on ``scope`` and ``source`` so the scope filter
stays cheap on large collections. Without one it uses ``QdrantClient`` local
mode (``path`` or ``":memory:"``), which is pure Python and blocking: calls run
in a worker thread, one at a time (local mode is not thread-safe).

Which embedder built each vector is stored in the collection's ``metadata``
(``{"candor": CollectionSpec}``), read once and cached per store instance:
a reindex through this instance refreshes it, and a mismatch is caught on the
first query after a restart.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from knowledge.embedders import Embedding, SparseVector
from knowledge.scopes import AllowedScopes
from knowledge.store import (
    SCOPE_FIELD,
    SOURCE_FIELD,
    ChunkRecord,
    CollectionSpec,
    SourceInfo,
    StoreError,
    StoreHit,
    VectorKind,
    VectorStore,
    check_query,
    check_spec,
)

_META_KEY = "candor"


class QdrantClientStore:
    """A :class:`~knowledge.store.VectorStore` through ``qdrant-client``."""

    def __init__(
        self,
        client: Any,
        collection: str,
        *,
        is_async: bool,
        is_server: bool,
        local_lock: threading.Lock | None = None,
    ) -> None:
        from qdrant_client import models

        self._m = models
        self._client = client
        self._is_async = is_async
        self.is_server = is_server
        self.collection = collection
        self._spec: CollectionSpec | None = None
        self._spec_loaded = False
        self._local_lock = local_lock or threading.Lock()
        self._write_lock = asyncio.Lock()

    @classmethod
    def server(cls, url: str, api_key: str | None, collection: str) -> QdrantClientStore:
        """A store on a Qdrant server or cluster."""
        from qdrant_client import AsyncQdrantClient

        return cls(
            AsyncQdrantClient(url=url, api_key=api_key), collection, is_async=True, is_server=True
        )

    @classmethod
    def local(cls, path: str, collection: str) -> QdrantClientStore:
        """A store in qdrant-client's local mode (``path`` directory or ``":memory:"``)."""
        from qdrant_client import QdrantClient

        client = (
            QdrantClient(location=":memory:") if path == ":memory:" else QdrantClient(path=path)
        )
        return cls(client, collection, is_async=False, is_server=False)

    async def _call(self, method: str, **kwargs: Any) -> Any:
        if self._is_async:
            return await getattr(self._client, method)(**kwargs)

        def run() -> Any:
            with self._local_lock:
                return getattr(self._client, method)(**kwargs)

        return await asyncio.to_thread(run)

    # ------------------------------------------------------------------ collection

    async def get_spec(self) -> CollectionSpec | None:
        if not self._spec_loaded:
            if await self._call("collection_exists", collection_name=self.collection):
                info = await self._call("get_collection", collection_name=self.collection)
                meta = (info.config.metadata or {}).get(_META_KEY)
                if meta is None:
                    raise StoreError(
                        f"The collection '{self.collection}' was not created by Candor (no spec metadata)."
                    )
                self._spec = CollectionSpec.from_json(meta)
            else:
                self._spec = None
            self._spec_loaded = True
        return self._spec

    async def _create(self, spec: CollectionSpec) -> None:
        m = self._m
        dense: dict[str, Any] = {}
        for v in spec.vectors:
            if v.name == "dense":
                if not v.size:
                    raise StoreError("A dense vector needs a known size to create the collection.")
                dense[v.name] = m.VectorParams(size=v.size, distance=m.Distance.COSINE)
        sparse = {
            v.name: m.SparseVectorParams(modifier=m.Modifier.IDF)
            for v in spec.vectors
            if v.name == "sparse"
        }
        await self._call(
            "create_collection",
            collection_name=self.collection,
            vectors_config=dense,
            sparse_vectors_config=sparse or None,
            metadata={_META_KEY: spec.to_json()},
        )
        if self.is_server:  # local mode ignores payload indexes
            for field in (SCOPE_FIELD, SOURCE_FIELD):
                await self._call(
                    "create_payload_index",
                    collection_name=self.collection,
                    field_name=field,
                    field_schema=m.PayloadSchemaType.KEYWORD,
                )
        self._spec, self._spec_loaded = spec, True

    async def ensure_collection(self, spec: CollectionSpec) -> None:
        async with self._write_lock:
            existing = await self.get_spec()
            if existing is not None:
                check_spec(self.collection, existing, spec)
                return
            await self._create(spec)

    async def recreate(self, spec: CollectionSpec) -> None:
        async with self._write_lock:
            if await self._call("collection_exists", collection_name=self.collection):
                await self._call("delete_collection", collection_name=self.collection)
            await self._create(spec)

    def staging(self) -> QdrantClientStore:
        return QdrantClientStore(
            self._client,
            f"{self.collection}__reindex",
            is_async=self._is_async,
            is_server=self.is_server,
            local_lock=self._local_lock,
        )

    async def drop(self) -> None:
        async with self._write_lock:
            if await self._call("collection_exists", collection_name=self.collection):
                await self._call("delete_collection", collection_name=self.collection)
            self._spec, self._spec_loaded = None, True

    async def replace_with(self, staged: VectorStore) -> None:
        """Copy the staged points (vectors included, nothing re-embedded) into a fresh collection."""
        if not isinstance(staged, QdrantClientStore) or staged._client is not self._client:
            raise StoreError(
                "Only a staging store on the same Qdrant client can replace this collection."
            )
        spec = await staged.get_spec()
        if spec is None:
            raise StoreError("The staging collection is missing; the reindex did not finish.")
        await self.recreate(spec)
        offset: Any = None
        while True:
            records, offset = await staged._call(
                "scroll",
                collection_name=staged.collection,
                limit=512,
                offset=offset,
                with_payload=True,
                with_vectors=True,
            )
            if records:
                points = [
                    self._m.PointStruct(id=r.id, vector=r.vector, payload=r.payload)
                    for r in records
                ]
                await self._call(
                    "upsert", collection_name=self.collection, points=points, wait=True
                )
            if offset is None:
                break
        await staged.drop()

    async def close(self) -> None:
        await self._call("close")

    async def optimize(self) -> None:
        """Qdrant optimizes in the background; nothing to do."""

    # ------------------------------------------------------------------ writes

    def _vector(self, embedding: Embedding) -> Any:
        if isinstance(embedding, SparseVector):
            return self._m.SparseVector(indices=embedding.indices, values=embedding.values)
        return embedding

    async def upsert(self, records: Sequence[ChunkRecord]) -> None:
        if not records:
            return
        points = [
            self._m.PointStruct(
                id=r.id,
                vector={n: self._vector(v) for n, v in r.vectors.items()},
                payload=dict(r.payload),
            )
            for r in records
        ]
        await self._call("upsert", collection_name=self.collection, points=points, wait=True)

    async def delete_ids(self, ids: Sequence[str]) -> None:
        if ids:
            selector = self._m.PointIdsList(points=list(ids))
            await self._call(
                "delete", collection_name=self.collection, points_selector=selector, wait=True
            )

    def _source_filter(self, source: str) -> Any:
        m = self._m
        return m.Filter(must=[m.FieldCondition(key=SOURCE_FIELD, match=m.MatchValue(value=source))])

    def _scope_filter(self, scopes: AllowedScopes) -> Any:
        m = self._m
        return m.Filter(
            must=[m.FieldCondition(key=SCOPE_FIELD, match=m.MatchAny(any=scopes.sorted()))]
        )

    async def delete_source(self, source: str) -> int:
        if await self.get_spec() is None:
            return 0
        flt = self._source_filter(source)
        result = await self._call(
            "count", collection_name=self.collection, count_filter=flt, exact=True
        )
        if result.count:
            selector = self._m.FilterSelector(filter=flt)
            await self._call(
                "delete", collection_name=self.collection, points_selector=selector, wait=True
            )
        return int(result.count)

    # ------------------------------------------------------------------ reads

    async def _scroll(
        self, flt: Any, with_payload: bool, batch: int
    ) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
        offset: Any = None
        while True:
            records, offset = await self._call(
                "scroll",
                collection_name=self.collection,
                scroll_filter=flt,
                limit=batch,
                offset=offset,
                with_payload=with_payload,
                with_vectors=False,
            )
            if records:
                yield [(str(r.id), dict(r.payload or {})) for r in records]
            if offset is None:
                return

    async def ids_for_source(self, source: str) -> set[str]:
        if await self.get_spec() is None:
            return set()
        out: set[str] = set()
        async for batch in self._scroll(self._source_filter(source), False, 1024):
            out.update(i for i, _ in batch)
        return out

    async def scroll_payloads(
        self, batch_size: int = 512
    ) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
        if await self.get_spec() is None:
            return
        async for batch in self._scroll(None, True, batch_size):
            yield batch

    async def count(self) -> int:
        if await self.get_spec() is None:
            return 0
        result = await self._call("count", collection_name=self.collection, exact=True)
        return int(result.count)

    async def has_any(self, scopes: AllowedScopes) -> bool:
        if not scopes.keys or await self.get_spec() is None:
            return False
        # One point's id is enough: cheaper than an exact filtered count.
        records, _ = await self._call(
            "scroll",
            collection_name=self.collection,
            scroll_filter=self._scope_filter(scopes),
            limit=1,
            with_payload=False,
        )
        return bool(records)

    async def list_sources(self) -> list[SourceInfo]:
        if await self.get_spec() is None:
            return []
        facet = await self._call(
            "facet", collection_name=self.collection, key=SOURCE_FIELD, limit=1_000_000, exact=True
        )
        out: list[SourceInfo] = []
        for hit in facet.hits:
            if not hit.count:  # Edge keeps emptied values in exact facets
                continue
            records, _ = await self._call(
                "scroll",
                collection_name=self.collection,
                scroll_filter=self._source_filter(str(hit.value)),
                limit=1,
            )
            p = dict(records[0].payload or {}) if records else {}
            out.append(
                SourceInfo(
                    source=str(hit.value),
                    chunks=int(hit.count),
                    title=str(p.get("title", "")),
                    link=str(p.get("link", "")),
                    scope=str(p.get("scope", "")),
                )
            )
        return sorted(out, key=lambda s: s.source)

    async def search(
        self, using: VectorKind, embedder: str, vector: Embedding, scopes: AllowedScopes, limit: int
    ) -> list[StoreHit]:
        spec = await self.get_spec()
        if spec is None:
            return []
        check_query(self.collection, spec, using, embedder)
        if not scopes.keys or (isinstance(vector, SparseVector) and not vector.indices):
            return []
        response = await self._call(
            "query_points",
            collection_name=self.collection,
            query=self._vector(vector),
            using=using,
            query_filter=self._scope_filter(scopes),
            limit=limit,
            with_payload=True,
        )
        return [StoreHit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]
