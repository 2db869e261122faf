"""Knowledge base benchmark: ingestion rate and filtered top-5 query latency.

Run by hand (not part of the test suite)::

    python bench/bench_knowledge.py            # 10k and 100k chunks on Qdrant Edge, 10k on qdrant-client local
    python bench/bench_knowledge.py --sizes 10000 --local-queries 20

A synthetic corpus (Zipf-distributed vocabulary, ~250-token sections under
Markdown headings, 30% workspace-wide and 70% spread over 50 channels) is
ingested through ``KnowledgeBase`` with the sparse BM25 embedder (``--processes``
worker processes, default 1, so embedding overlaps store writes), and once more
with every vector precomputed: that second rate excludes the embedding call. Queries
go through ``KnowledgeBase.search`` with a channel scope filter (workspace +
one channel, about a third of the data) and top 5; the store-only latency is
reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from knowledge import (
    Chunker,
    Document,
    Embedding,
    KnowledgeBase,
    Scope,
    SparseLexicalEmbedder,
    open_store,
    scopes_for_channel,
)

VOCAB = 30_000
CHANNELS = [f"C{n:04d}" for n in range(50)]


class PrecomputedEmbedder(SparseLexicalEmbedder):
    """The sparse embedder with every document vector computed beforehand.

    Ingesting through it measures chunking + store writes without the embedding call.
    """

    def __init__(self, docs: Sequence[Document]) -> None:
        super().__init__()
        chunker = Chunker()
        texts = [c.text for d in docs for c in chunker.chunk(d)]
        self.vectors = dict(zip(texts, self._embed_many(texts), strict=True))

    async def embed_documents(self, texts: Sequence[str]) -> list[Embedding]:
        return [self.vectors[t] for t in texts]


def make_words(rng: random.Random) -> tuple[list[str], list[float]]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(VOCAB)]
    cum = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(VOCAB)))
    return words, cum


def make_documents(n_chunks: int, seed: int = 7) -> list[Document]:
    rng = random.Random(seed)
    words, cum = make_words(rng)
    docs: list[Document] = []
    sections_per_doc = 20
    for d in range((n_chunks + sections_per_doc - 1) // sections_per_doc):
        parts = [f"# Document {d}"]
        for s in range(min(sections_per_doc, n_chunks - d * sections_per_doc)):
            body = " ".join(rng.choices(words, cum_weights=cum, k=140))
            parts.append(f"## Section {s}\n\n{body}.")
        scope = Scope.workspace() if rng.random() < 0.3 else Scope.channel(rng.choice(CHANNELS))
        docs.append(
            Document(f"bench:{d}", f"Document {d}", f"bench://{d}", scope, "\n\n".join(parts))
        )
    return docs


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def ingest(
    backend: str, docs: Sequence[Document], root: Path, embedder: SparseLexicalEmbedder
) -> tuple[KnowledgeBase, float]:
    if backend == "edge":
        store = open_store(None, None, str(root), "bench")
    else:
        store = open_store(None, None, ":memory:", "bench", backend="qdrant-local")
    kb = KnowledgeBase(store, [embedder], batch_size=512)
    start = time.perf_counter()
    await kb.add_documents(docs)
    return kb, time.perf_counter() - start


async def run(
    backend: str, n_chunks: int, n_queries: int, root: Path, processes: int = 0
) -> dict[str, float]:
    docs = make_documents(n_chunks)
    kb, bare = await ingest(
        backend, docs, root / f"{backend}-{n_chunks}-bare", PrecomputedEmbedder(docs)
    )
    await kb.close()
    embedder = SparseLexicalEmbedder(processes=processes)
    kb, total = await ingest(backend, docs, root / f"{backend}-{n_chunks}", embedder)
    store = kb.store
    chunks = await store.count()

    rng = random.Random(11)
    words, _ = make_words(random.Random(7))
    queries = [" ".join(rng.choice(words[50:3000]) for _ in range(5)) for _ in range(n_queries)]
    scopes = [
        scopes_for_channel(rng.choice(CHANNELS), channel_private=False) for _ in range(n_queries)
    ]
    for q, s in list(zip(queries, scopes, strict=True))[:5]:  # warm up
        await kb.search(q, s, limit=5)
    kb_lat: list[float] = []
    store_lat: list[float] = []
    hits_seen = 0
    for q, s in zip(queries, scopes, strict=True):
        t0 = time.perf_counter()
        hits = await kb.search(q, s, limit=5)
        kb_lat.append((time.perf_counter() - t0) * 1000)
        hits_seen += len(hits)
        assert all(h.scope in s for h in hits)
        vector = embedder.embed_query_sync(q)
        t0 = time.perf_counter()
        await store.search("sparse", embedder.name, vector, s, 5)
        store_lat.append((time.perf_counter() - t0) * 1000)
    await kb.close()
    embedder.close()
    return {
        "chunks": chunks,
        "ingest_s": total,
        "rate_with_embed": chunks / total,
        "rate_without_embed": chunks / bare,
        "p50": statistics.median(kb_lat),
        "p99": percentile(kb_lat, 99),
        "store_p50": statistics.median(store_lat),
        "store_p99": percentile(store_lat, 99),
        "avg_hits": hits_seen / n_queries,
    }


def report(backend: str, r: dict[str, float]) -> None:
    print(
        f"{backend:13s} {int(r['chunks']):>7d} chunks | ingest {r['ingest_s']:6.1f}s "
        f"= {r['rate_with_embed']:7.0f} chunks/s with sparse embedding, "
        f"{r['rate_without_embed']:7.0f} chunks/s excluding it (precomputed vectors) | "
        f"query top-5 filtered p50 {r['p50']:7.2f} ms p99 {r['p99']:7.2f} ms "
        f"(store only p50 {r['store_p50']:7.2f} ms p99 {r['store_p99']:7.2f} ms) | "
        f"{r['avg_hits']:.1f} hits/query",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--local-size", type=int, default=10_000, help="0 skips qdrant-client local mode"
    )
    parser.add_argument("--local-queries", type=int, default=40)
    parser.add_argument(
        "--processes", type=int, default=1, help="BM25 worker processes (0 = embed in a thread)"
    )
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            result = await run("edge", size, args.queries, Path(tmp), args.processes)
            report(f"edge/p{args.processes}", result)
        if args.local_size:
            report(
                "qdrant-local",
                await run("qdrant-local", args.local_size, args.local_queries, Path(tmp)),
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
