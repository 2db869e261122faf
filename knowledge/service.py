"""The knowledge base facade used by the CLI and the bot.

:class:`KnowledgeBase` ties loaders, the chunker, the embedders, the store and
the retriever together. Ingestion is incremental per source: chunk ids are
derived from content, so adding a source again embeds and writes only the
chunks that are new, then deletes the ones that disappeared (upsert first, so
a source is never briefly empty). Everything external — store, embedders,
token counter — is handed in.

``format_sources`` and ``cited_indices`` are the two halves of citations: the
first numbers hits for the prompt, the second reads back which numbers the
model cited.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from knowledge.chunking import Chunk, Chunker
from knowledge.documents import Document
from knowledge.embedders import Embedder, Embedding
from knowledge.loaders import SkippedFile, load_paths
from knowledge.retriever import Hit, Retriever, ScoreFloor
from knowledge.scopes import AllowedScopes, Scope
from knowledge.store import ChunkRecord, CollectionSpec, SourceInfo, VectorSpec, VectorStore
from knowledge.tokens import CountTokens, estimate_tokens


@dataclass(frozen=True)
class IngestReport:
    """What adding one source changed."""

    source: str
    title: str
    added: int
    removed: int
    unchanged: int

    @property
    def chunks(self) -> int:
        return self.added + self.unchanged


@dataclass(frozen=True)
class IngestProgress:
    """Reported after each document of a batch: ``done`` of ``total``, with its report."""

    done: int
    total: int
    report: IngestReport


@dataclass
class AddPathsResult:
    """Reports for the sources ingested and the files skipped, with reasons."""

    reports: list[IngestReport] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


class KnowledgeBase:
    """Add, list, remove and search knowledge; rebuild it for a new embedder."""

    def __init__(
        self,
        store: VectorStore,
        embedders: Sequence[Embedder],
        *,
        count_tokens: CountTokens = estimate_tokens,
        chunk_size: int = 300,
        chunk_overlap: int = 40,
        batch_size: int = 256,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.store = store
        self.embedders = list(embedders)
        self.retriever = Retriever(store, self.embedders)
        self.chunker = Chunker(chunk_size, chunk_overlap, count_tokens)
        self.batch_size = batch_size
        #: Applied to every document's text before chunking (the caller's redaction; the
        #: knowledge package does not know what it withholds).
        self.redact = redact
        self._spec: CollectionSpec | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ helpers

    async def collection_spec(self) -> CollectionSpec:
        """The spec the configured embedders produce (dense size probed once if unknown)."""
        if self._spec is None:
            vectors: list[VectorSpec] = []
            for e in self.embedders:
                size = e.dimensions
                if e.kind == "dense" and size is None:
                    probe = await e.embed_query("dimension probe")
                    size = len(probe) if isinstance(probe, list) else None
                vectors.append(VectorSpec(e.kind, e.name, size if e.kind == "dense" else None))
            self._spec = CollectionSpec(tuple(vectors))
        return self._spec

    async def _records(
        self, ids: Sequence[str], texts: Sequence[str], payloads: Sequence[dict[str, Any]]
    ) -> list[ChunkRecord]:
        vectors: dict[str, list[Embedding]] = {}
        for e in self.embedders:
            vectors[e.kind] = await e.embed_documents(texts)
        return [
            ChunkRecord(cid, payload, {kind: vs[i] for kind, vs in vectors.items()})
            for i, (cid, payload) in enumerate(zip(ids, payloads, strict=True))
        ]

    # ------------------------------------------------------------------ ingestion

    async def add_document(self, doc: Document) -> IngestReport:
        """Ingest one document, replacing what was stored for its source; only changed chunks are embedded."""
        return (await self.add_documents([doc], optimize=False))[0]

    async def add_documents(
        self,
        docs: Sequence[Document],
        progress: Callable[[IngestProgress], None] | None = None,
        *,
        optimize: bool = True,
    ) -> list[IngestReport]:
        """Ingest documents, each replacing what was stored for its source.

        New chunks of consecutive documents are grouped into batches of
        ``batch_size``. Batches are pipelined: batch N+1 is embedded while
        batch N is written, so an embedder that works off the event loop's
        thread (worker processes, a remote API) overlaps with the store. A
        document's stale chunks are deleted right after its new chunks are
        written; ``progress`` is called once per document, after it is stored.
        """
        reports: list[IngestReport] = []
        pending: list[Chunk] = []
        group: list[tuple[IngestReport, set[str]]] = []
        tasks: list[asyncio.Task[Any]] = []
        writing: asyncio.Task[None] | None = None
        writing_sources: set[str] = set()

        async def store_batch(
            chunks: list[Chunk],
            embedding: asyncio.Task[list[ChunkRecord]] | None,
            batch_group: list[tuple[IngestReport, set[str]]],
        ) -> None:
            if embedding is not None:
                await self.store.upsert(await embedding)
            stale = sorted(set().union(*(ids for _, ids in batch_group)))
            if stale:
                await self.store.delete_ids(stale)
            for report, _ in batch_group:
                reports.append(report)
                if progress is not None:
                    progress(IngestProgress(len(reports), len(docs), report))

        async def flush() -> None:
            nonlocal writing
            chunks, batch_group = list(pending), list(group)
            pending.clear()
            group.clear()
            embedding: asyncio.Task[list[ChunkRecord]] | None = None
            if chunks:
                await self.store.ensure_collection(await self.collection_spec())
                embedding = asyncio.create_task(
                    self._records(
                        [c.id for c in chunks],
                        [c.text for c in chunks],
                        [c.payload() for c in chunks],
                    )
                )
                tasks.append(embedding)
            await drain()
            writing = asyncio.create_task(store_batch(chunks, embedding, batch_group))
            writing_sources.update(r.source for r, _ in batch_group)
            tasks.append(writing)

        async def drain() -> None:
            nonlocal writing
            if writing is not None:
                done, writing = writing, None
                await done
            writing_sources.clear()

        async with self._lock:
            try:
                for doc in docs:
                    if any(r.source == doc.source for r, _ in group):
                        await (
                            flush()
                        )  # the same source twice: the second must see the first's chunks
                    if doc.source in writing_sources:
                        await drain()
                    if self.redact is not None:
                        doc = _redacted(doc, self.redact)
                    chunks = await asyncio.to_thread(self.chunker.chunk, doc)
                    existing = await self.store.ids_for_source(doc.source)
                    new = [c for c in chunks if c.id not in existing]
                    stale = existing - {c.id for c in chunks}
                    pending.extend(new)
                    report = IngestReport(
                        doc.source, doc.title, len(new), len(stale), len(chunks) - len(new)
                    )
                    group.append((report, stale))
                    if len(pending) >= self.batch_size:
                        await flush()
                await flush()
                await drain()
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        if optimize and any(r.added for r in reports):
            await self.store.optimize()
        return reports

    async def add_paths(
        self,
        paths: Iterable[str | os.PathLike[str]],
        scope: Scope,
        progress: Callable[[IngestProgress], None] | None = None,
    ) -> AddPathsResult:
        """Ingest files and folders (recursively) under ``scope``; unsupported files are skipped with a reason."""
        loaded = await asyncio.to_thread(load_paths, list(paths), scope)
        reports = await self.add_documents(loaded.documents, progress)
        return AddPathsResult(reports, loaded.skipped)

    async def list_sources(self) -> list[SourceInfo]:
        """Every ingested source with its chunk count."""
        return await self.store.list_sources()

    async def remove_source(self, source: str) -> int:
        """Remove every chunk of ``source``; return how many were removed."""
        async with self._lock:
            return await self.store.delete_source(source)

    async def reindex(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild the collection with the configured embedders from the stored chunk payloads.

        Chunks are streamed from the live collection, re-embedded and written to
        a staging collection; only when all of it is written does the staging
        collection replace the live one. A failure half-way (say, the embeddings
        API is down) leaves the live collection as it was. Returns the number of
        chunks written; ``progress(done, total)`` is called after each batch.
        """
        async with self._lock:
            total = await self.store.count()
            self._spec = None
            spec = await self.collection_spec()
            staged = self.store.staging()
            await staged.recreate(spec)
            done = 0
            try:
                async for batch in self.store.scroll_payloads(self.batch_size):
                    records = await self._records(
                        [i for i, _ in batch],
                        [str(p.get("text", "")) for _, p in batch],
                        [p for _, p in batch],
                    )
                    await staged.upsert(records)
                    done += len(batch)
                    if progress is not None:
                        progress(done, total)
            except BaseException:
                await staged.drop()
                raise
            await self.store.replace_with(staged)
        await self.store.optimize()
        return done

    # ------------------------------------------------------------------ retrieval

    async def search(
        self,
        query: str,
        allowed_scopes: AllowedScopes,
        limit: int = 5,
        score_floor: ScoreFloor = None,
    ) -> list[Hit]:
        """Top ``limit`` hits for ``query`` among chunks whose scope is in ``allowed_scopes``."""
        return await self.retriever.search(
            query, allowed_scopes, top_k=limit, score_floor=score_floor
        )

    async def close(self) -> None:
        await self.store.close()


# ---------------------------------------------------------------------- citations

_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


def _redacted(doc: Document, redact: Callable[[str], str]) -> Document:
    sections = tuple(replace(s, text=redact(s.text)) for s in doc.sections)
    return replace(doc, title=redact(doc.title), text=redact(doc.text), sections=sections)


def format_sources(hits: Sequence[Hit], *, max_chars_per_source: int = 2000) -> str:
    """Number hits for a prompt: ``[1] Title (link)`` then the chunk text, one block per hit."""
    blocks = []
    for n, hit in enumerate(hits, start=1):
        text = (
            hit.text
            if len(hit.text) <= max_chars_per_source
            else hit.text[:max_chars_per_source] + "…"
        )
        header = f"[{n}] {hit.title}" + (f" ({hit.link})" if hit.link else "")
        blocks.append(f"{header}\n{text}")
    return "\n\n".join(blocks)


def cited_indices(answer_text: str, max_index: int | None = None) -> set[int]:
    """The source numbers cited in an answer as ``[n]`` or ``[n, m]``; out-of-range numbers are dropped."""
    found: set[int] = set()
    for match in _CITATION.finditer(answer_text):
        for part in match.group(1).split(","):
            n = int(part)
            if n >= 1 and (max_index is None or n <= max_index):
                found.add(n)
    return found
