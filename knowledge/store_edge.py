"""Embedded vector store on Qdrant Edge (``qdrant-edge-py``), the laptop/CI default.

Layout on disk: ``<root>/<collection>/shard/`` is the Edge shard and
``<root>/<collection>/spec.json`` records which embedder built each vector.
Edge runs in-process (Rust); its calls are blocking, so each runs in a worker
thread via ``asyncio.to_thread``. Writes and structural changes are serialised
with an ``asyncio.Lock``; reads run concurrently.

Keyword payload indexes on ``scope`` and ``source`` are created with the shard:
the scope filter uses them, and listing sources is a facet over ``source``.

Only ``scope`` and ``source`` are stored as payload fields; the rest of a
chunk's payload (text, title, link, headings, ...) is one JSON string under
``chunk``. Edge converts Python payloads key by key and that conversion, not
the engine, was the ingestion bottleneck (about 4x faster this way, see NOTES).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

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

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _vector(embedding: Embedding) -> list[float] | qe.SparseVector:
    if isinstance(embedding, SparseVector):
        return qe.SparseVector(embedding.indices, embedding.values)
    return embedding


_PACKED = "chunk"


def _pack(payload: Mapping[str, Any]) -> dict[str, Any]:
    rest = {k: v for k, v in payload.items() if k not in (SCOPE_FIELD, SOURCE_FIELD)}
    return {
        SCOPE_FIELD: payload[SCOPE_FIELD],
        SOURCE_FIELD: payload[SOURCE_FIELD],
        _PACKED: json.dumps(rest, separators=(",", ":")),
    }


def _unpack(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    if not payload:
        return {}
    out = dict(payload)
    packed = out.pop(_PACKED, None)
    if isinstance(packed, str):
        out.update(json.loads(packed))
    return out


def _scope_filter(scopes: AllowedScopes) -> qe.Filter:
    return qe.Filter(must=[qe.FieldCondition(SCOPE_FIELD, match=qe.MatchAny(scopes.sorted()))])


def _source_filter(source: str) -> qe.Filter:
    return qe.Filter(must=[qe.FieldCondition(SOURCE_FIELD, match=qe.MatchValue(source))])


class EdgeStore:
    """A :class:`~knowledge.store.VectorStore` on an in-process Qdrant Edge shard."""

    def __init__(self, root: Path, collection: str) -> None:
        if not _NAME.match(collection):
            raise StoreError(
                f"Collection name {collection!r} must be 1-64 letters, digits, '-' or '_'."
            )
        self.collection = collection
        self._dir = Path(root) / collection
        self._shard_dir = self._dir / "shard"
        self._spec_file = self._dir / "spec.json"
        self._shard: qe.EdgeShard | None = None
        self._spec: CollectionSpec | None = None
        self._loaded = False
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    def _load_sync(self) -> None:
        if self._loaded:
            return
        if self._spec_file.exists() and self._shard_dir.exists():
            self._spec = CollectionSpec.from_json(json.loads(self._spec_file.read_text()))
            try:
                self._shard = qe.EdgeShard.load(str(self._shard_dir))
            except Exception as exc:
                if "WouldBlock" in str(exc):
                    raise StoreError(
                        f"The embedded knowledge store at {self._dir} is open in another "
                        "process (is `candor serve` running?); stop it, or use a Qdrant "
                        "server with QDRANT_URL."
                    ) from None
                raise
        self._loaded = True

    async def _ensure_loaded(self) -> qe.EdgeShard | None:
        if not self._loaded:
            async with self._lock:
                await asyncio.to_thread(self._load_sync)
        return self._shard

    def _create_sync(self, spec: CollectionSpec) -> None:
        dense: dict[str, qe.EdgeVectorParams] = {
            v.name: qe.EdgeVectorParams(size=v.size, distance=qe.Distance.Cosine)
            for v in spec.vectors
            if v.name == "dense" and v.size
        }
        sparse: dict[str, qe.EdgeSparseVectorParams] = {
            v.name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)
            for v in spec.vectors
            if v.name == "sparse"
        }
        if any(v.name == "dense" and not v.size for v in spec.vectors):
            raise StoreError("A dense vector needs a known size to create the collection.")
        if self._shard_dir.exists():
            shutil.rmtree(self._shard_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        shard = qe.EdgeShard.create(
            str(self._shard_dir), qe.EdgeConfig(vectors=dense or None, sparse_vectors=sparse)
        )
        shard.update(
            qe.UpdateOperation.create_field_index(SCOPE_FIELD, qe.PayloadSchemaType.Keyword)
        )
        shard.update(
            qe.UpdateOperation.create_field_index(SOURCE_FIELD, qe.PayloadSchemaType.Keyword)
        )
        tmp = self._spec_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(spec.to_json()))
        tmp.replace(self._spec_file)
        self._shard, self._spec, self._loaded = shard, spec, True

    async def get_spec(self) -> CollectionSpec | None:
        await self._ensure_loaded()
        return self._spec

    async def ensure_collection(self, spec: CollectionSpec) -> None:
        await self._ensure_loaded()
        async with self._lock:
            if self._spec is not None:
                check_spec(self.collection, self._spec, spec)
                return
            await asyncio.to_thread(self._create_sync, spec)

    async def recreate(self, spec: CollectionSpec) -> None:
        await self._ensure_loaded()
        async with self._lock:
            if self._shard is not None:
                await asyncio.to_thread(self._shard.close)
                self._shard, self._spec = None, None
            if self._spec_file.exists():
                self._spec_file.unlink()
            await asyncio.to_thread(self._create_sync, spec)

    def staging(self) -> EdgeStore:
        return EdgeStore(self._dir.parent, f"{self.collection}__reindex")

    async def drop(self) -> None:
        await self.close()
        await asyncio.to_thread(shutil.rmtree, self._dir, True)

    async def replace_with(self, staged: VectorStore) -> None:
        if not isinstance(staged, EdgeStore) or staged._dir.parent != self._dir.parent:
            raise StoreError(
                "Only a staging store of the same Edge root can replace this collection."
            )
        await staged.close()
        await self.close()
        async with self._lock:
            old = self._dir.with_name(f"{self._dir.name}__old")

            def swap() -> None:
                # two renames: the live directory is never half-written
                shutil.rmtree(old, ignore_errors=True)
                if self._dir.exists():
                    self._dir.rename(old)
                staged._dir.rename(self._dir)
                shutil.rmtree(old, ignore_errors=True)

            await asyncio.to_thread(swap)

    async def close(self) -> None:
        async with self._lock:
            if self._shard is not None:
                await asyncio.to_thread(self._shard.close)
            self._shard, self._spec, self._loaded = None, None, False

    async def optimize(self) -> None:
        shard = await self._ensure_loaded()
        if shard is not None:
            async with self._lock:
                await asyncio.to_thread(shard.optimize)

    # ------------------------------------------------------------------ writes

    def _require(self) -> qe.EdgeShard:
        if self._shard is None:
            raise StoreError(f"The knowledge collection '{self.collection}' does not exist yet.")
        return self._shard

    async def upsert(self, records: Sequence[ChunkRecord]) -> None:
        if not records:
            return
        await self._ensure_loaded()
        async with self._lock:
            await asyncio.to_thread(self._upsert_sync, self._require(), records)

    @staticmethod
    def _upsert_sync(shard: qe.EdgeShard, records: Sequence[ChunkRecord]) -> None:
        points = [
            qe.Point(r.id, {name: _vector(v) for name, v in r.vectors.items()}, _pack(r.payload))
            for r in records
        ]
        shard.update(qe.UpdateOperation.upsert_points(points))

    async def delete_ids(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        await self._ensure_loaded()
        point_ids: list[qe.PointId] = [uuid.UUID(i) for i in ids]
        async with self._lock:
            await asyncio.to_thread(
                self._require().update, qe.UpdateOperation.delete_points(point_ids)
            )

    async def delete_source(self, source: str) -> int:
        shard = await self._ensure_loaded()
        if shard is None:
            return 0
        async with self._lock:
            count = await asyncio.to_thread(
                shard.count, qe.CountRequest(exact=True, filter=_source_filter(source))
            )
            if count:
                op = qe.UpdateOperation.delete_points_by_filter(_source_filter(source))
                await asyncio.to_thread(shard.update, op)
        return int(count)

    # ------------------------------------------------------------------ reads

    def _scroll_sync(
        self, shard: qe.EdgeShard, flt: qe.Filter | None, with_payload: bool, batch: int
    ) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        offset: qe.PointId | None = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=batch, filter=flt, with_payload=with_payload)
            )
            out.extend((str(r.id), _unpack(r.payload)) for r in records)
            if offset is None:
                return out

    async def ids_for_source(self, source: str) -> set[str]:
        shard = await self._ensure_loaded()
        if shard is None:
            return set()
        rows = await asyncio.to_thread(
            self._scroll_sync, shard, _source_filter(source), False, 1024
        )
        return {i for i, _ in rows}

    async def count(self) -> int:
        shard = await self._ensure_loaded()
        if shard is None:
            return 0
        return int(await asyncio.to_thread(shard.count, qe.CountRequest(exact=True)))

    async def has_any(self, scopes: AllowedScopes) -> bool:
        shard = await self._ensure_loaded()
        if shard is None or not scopes.keys:
            return False
        # One point's id is enough: cheaper than an exact filtered count.
        request = qe.ScrollRequest(limit=1, filter=_scope_filter(scopes), with_payload=False)
        records, _ = await asyncio.to_thread(shard.scroll, request)
        return bool(records)

    def _list_sync(self, shard: qe.EdgeShard) -> list[SourceInfo]:
        facet = shard.facet(qe.FacetRequest(key=SOURCE_FIELD, limit=1_000_000, exact=True))
        out: list[SourceInfo] = []
        for hit in facet.hits:
            if not hit.count:  # Edge keeps emptied values in exact facets
                continue
            records, _ = shard.scroll(
                qe.ScrollRequest(limit=1, filter=_source_filter(str(hit.value)), with_payload=True)
            )
            p = _unpack(records[0].payload) if records else {}
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

    async def list_sources(self) -> list[SourceInfo]:
        shard = await self._ensure_loaded()
        if shard is None:
            return []
        return await asyncio.to_thread(self._list_sync, shard)

    async def scroll_payloads(
        self, batch_size: int = 512
    ) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
        shard = await self._ensure_loaded()
        if shard is None:
            return
        offset: qe.PointId | None = None
        while True:
            request = qe.ScrollRequest(offset=offset, limit=batch_size, with_payload=True)
            records, offset = await asyncio.to_thread(shard.scroll, request)
            if records:
                yield [(str(r.id), _unpack(r.payload)) for r in records]
            if offset is None:
                return

    async def search(
        self, using: VectorKind, embedder: str, vector: Embedding, scopes: AllowedScopes, limit: int
    ) -> list[StoreHit]:
        shard = await self._ensure_loaded()
        if shard is None or self._spec is None:
            return []
        check_query(self.collection, self._spec, using, embedder)
        if not scopes.keys or (isinstance(vector, SparseVector) and not vector.indices):
            return []
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(_vector(vector), using=using),
            filter=_scope_filter(scopes),
            with_payload=True,
        )
        points = await asyncio.to_thread(shard.query, request)
        return [StoreHit(str(p.id), float(p.score), _unpack(p.payload)) for p in points]
