"""The knowledge base on real embedded Qdrant: recall, incremental re-ingest, removal, reindex."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from knowledge import (
    Document,
    EmbedderMismatch,
    Embedding,
    EmbeddingError,
    IngestProgress,
    KnowledgeBase,
    Scope,
    SparseLexicalEmbedder,
    VectorStore,
    scopes_for_channel,
    scopes_for_dm,
)

from .conftest import CORPUS, HashingDenseEmbedder, make_store

RECALL_CASES = [
    ("How many vacation days do I get per year?", "vacation-policy.md"),
    ("Who must approve an expense above 500 EUR?", "expenses.md"),
    ("When is the on-call handover?", "oncall.md"),
    ("How long until an unacknowledged page escalates?", "oncall.md"),
    ("How do I roll back a bad release?", "deploy.md"),
    ("What should I do if my laptop is stolen?", "security.md"),
    ("Where do new hires pick up their badge?", "onboarding.html"),
    ("What is the guest wifi network called?", "office-wifi.txt"),
    ("Does the company pay for the gym?", "benefits.md"),
    ("Is dental insurance included?", "benefits.md"),
]


def sources_of(hits: list) -> list[str]:  # type: ignore[type-arg]
    return [Path(h.link.split("#")[0]).name for h in hits]


async def test_recall_at_5_on_the_corpus(corpus_kb: KnowledgeBase) -> None:
    allowed = scopes_for_channel("CGENERAL", channel_private=False)
    found = 0
    for query, expected in RECALL_CASES:
        hits = await corpus_kb.search(query, allowed, limit=5)
        found += expected in sources_of(hits)
    assert found == len(RECALL_CASES)


async def test_top_hit_carries_text_title_link_and_raw_score(corpus_kb: KnowledgeBase) -> None:
    hits = await corpus_kb.search("How do I roll back a bad release?", scopes_for_dm([]), limit=3)
    top = hits[0]
    assert top.title == "Deploying the API"
    assert "deployctl rollback" in top.text
    assert top.headings == ("Deploying the API", "Rollback")
    assert top.scope == "workspace"
    assert top.score == top.scores["sparse"] > 0
    assert [h.rank_score for h in hits] == sorted((h.rank_score for h in hits), reverse=True)


async def test_channel_knowledge_is_found_in_that_channel(corpus_kb: KnowledgeBase) -> None:
    query = "What discount can account executives give?"
    in_sales = await corpus_kb.search(query, scopes_for_channel("CSALES", channel_private=False))
    assert sources_of(in_sales)[0] == "playbook.md"
    elsewhere = await corpus_kb.search(query, scopes_for_channel("COTHER", channel_private=False))
    assert "playbook.md" not in sources_of(elsewhere)


async def test_score_floor_applies_to_raw_similarity(corpus_kb: KnowledgeBase) -> None:
    allowed = scopes_for_dm([])
    hits = await corpus_kb.search("guest wifi network", allowed, limit=5)
    assert hits
    floor = hits[0].score - 1e-6
    floored = await corpus_kb.search("guest wifi network", allowed, limit=5, score_floor=floor)
    assert [h.chunk_id for h in floored] == [hits[0].chunk_id]
    assert await corpus_kb.search("guest wifi network", allowed, score_floor={"sparse": 1e9}) == []


async def test_reingesting_the_same_source_changes_nothing(
    kb: KnowledgeBase, store: VectorStore
) -> None:
    first = await kb.add_paths([CORPUS / "handbook"], Scope.workspace())
    ids_before = {s.source: await store.ids_for_source(s.source) for s in await kb.list_sources()}
    count_before = await store.count()
    second = await kb.add_paths([CORPUS / "handbook"], Scope.workspace())
    assert all(r.added == 0 and r.removed == 0 for r in second.reports)
    assert [r.unchanged for r in second.reports] == [r.chunks for r in first.reports]
    assert await store.count() == count_before
    assert {
        s.source: await store.ids_for_source(s.source) for s in await kb.list_sources()
    } == ids_before


async def test_editing_a_source_replaces_only_changed_chunks(
    kb: KnowledgeBase, store: VectorStore, tmp_path: Path
) -> None:
    path = tmp_path / "guide.md"
    sections = [f"## Part {i}\n\nPart {i} explains topic number {i} in detail." for i in range(6)]
    path.write_text("# Guide\n\n" + "\n\n".join(sections))
    await kb.add_paths([path], Scope.workspace())
    source = f"file:{path.resolve()}"
    before = await store.ids_for_source(source)
    assert len(before) == 6
    sections[2] = "## Part 2\n\nPart 2 now covers penguins instead."
    path.write_text("# Guide\n\n" + "\n\n".join(sections))
    result = await kb.add_paths([path], Scope.workspace())
    report = result.reports[0]
    assert (report.added, report.removed, report.unchanged) == (1, 1, 5)
    after = await store.ids_for_source(source)
    assert len(after) == 6 and len(before & after) == 5
    hits = await kb.search("penguins", scopes_for_dm([]))
    assert hits and "penguins" in hits[0].text
    old_hits = await kb.search("Part 2 explains topic number 2", scopes_for_dm([]), limit=10)
    assert all("Part 2 explains" not in h.text for h in old_hits)


async def test_moving_a_source_to_another_scope_rewrites_its_chunks(kb: KnowledgeBase) -> None:
    doc = Document(
        "upload:x", "X", "x", Scope.channel("C1"), "Quarterly numbers are in the finance drive."
    )
    await kb.add_document(doc)
    moved = await kb.add_document(Document("upload:x", "X", "x", Scope.workspace(), doc.text))
    assert (moved.added, moved.removed) == (1, 1)
    hits = await kb.search("quarterly numbers", scopes_for_dm([]))
    assert [h.scope for h in hits] == ["workspace"]


async def test_list_and_remove_sources(corpus_kb: KnowledgeBase, store: VectorStore) -> None:
    sources = await corpus_kb.list_sources()
    assert len(sources) == 10
    by_title = {s.title: s for s in sources}
    assert by_title["Project Nightingale"].scope == "channel:CPRIV"
    assert all(s.chunks >= 1 for s in sources)
    total = await store.count()
    assert sum(s.chunks for s in sources) == total
    vacation = by_title["Vacation policy"]
    assert await corpus_kb.remove_source(vacation.source) == vacation.chunks
    assert await store.count() == total - vacation.chunks
    assert vacation.source not in {s.source for s in await corpus_kb.list_sources()}
    hits = await corpus_kb.search("How many vacation days do I get?", scopes_for_dm([]))
    assert "vacation-policy.md" not in [Path(h.link).name for h in hits]
    assert await corpus_kb.remove_source("file:/nope") == 0


async def test_progress_is_reported_per_document(kb: KnowledgeBase) -> None:
    seen: list[IngestProgress] = []
    result = await kb.add_paths([CORPUS / "handbook"], Scope.workspace(), progress=seen.append)
    assert [p.done for p in seen] == list(range(1, 9))
    assert {p.total for p in seen} == {8}
    assert len(result.skipped) == 1


async def test_search_before_anything_is_ingested_returns_nothing(kb: KnowledgeBase) -> None:
    assert await kb.list_sources() == []
    assert await kb.search("anything", scopes_for_dm([])) == []


async def test_querying_with_another_embedder_raises_mismatch(
    corpus_kb: KnowledgeBase, store: VectorStore
) -> None:
    other = KnowledgeBase(store, [SparseLexicalEmbedder(k1=2.0)])
    with pytest.raises(EmbedderMismatch, match="run a reindex"):
        await other.search("vacation", scopes_for_dm([]))
    dense = KnowledgeBase(store, [HashingDenseEmbedder()])
    with pytest.raises(EmbedderMismatch):
        await dense.search("vacation", scopes_for_dm([]))
    with pytest.raises(EmbedderMismatch):
        await dense.add_document(Document("upload:y", "Y", "y", Scope.workspace(), "some text"))


async def test_reindex_rebuilds_for_hybrid_and_keeps_scopes(
    corpus_kb: KnowledgeBase, store: VectorStore
) -> None:
    total = await store.count()
    hybrid = KnowledgeBase(store, [HashingDenseEmbedder(), SparseLexicalEmbedder()])
    progress: list[tuple[int, int]] = []
    assert await hybrid.reindex(progress=lambda done, all_: progress.append((done, all_))) == total
    assert progress[-1] == (total, total)
    assert await store.count() == total
    hits = await hybrid.search("How do I roll back a bad release?", scopes_for_dm([]), limit=5)
    top = hits[0]
    assert "deployctl rollback" in top.text
    assert set(top.scores) == {"dense", "sparse"}
    assert top.score == top.scores["dense"]  # first configured retriever's raw cosine
    assert -1.0 <= top.scores["dense"] <= 1.0
    # the fused score: both raw scores mapped to [0, 1] the same way for every query
    assert 0.0 < top.rank_score <= 1.0
    assert [h.rank_score for h in hits] == sorted((h.rank_score for h in hits), reverse=True)
    leaked = await hybrid.search(
        "Project Nightingale launch date", scopes_for_dm(["CSALES"]), limit=20
    )
    assert all(h.scope != "channel:CPRIV" for h in leaked)
    # the old sparse-only base may still read the sparse vector, but not write half-embedded chunks
    assert await corpus_kb.search("vacation days", scopes_for_dm([]))
    with pytest.raises(EmbedderMismatch):
        await corpus_kb.add_document(Document("upload:z", "Z", "z", Scope.workspace(), "new text"))


async def test_edge_store_persists_across_reopen(tmp_path: Path) -> None:
    store = make_store("edge", tmp_path)
    kb = KnowledgeBase(store, [SparseLexicalEmbedder()])
    await kb.add_paths([CORPUS / "handbook" / "deploy.md"], Scope.workspace())
    count = await store.count()
    await store.close()
    reopened = make_store("edge", tmp_path)
    kb2 = KnowledgeBase(reopened, [SparseLexicalEmbedder()])
    assert await reopened.count() == count
    hits = await kb2.search("roll back release", scopes_for_dm([]))
    assert hits and "deployctl" in hits[0].text
    with pytest.raises(EmbedderMismatch):
        await KnowledgeBase(reopened, [HashingDenseEmbedder()]).search("x", scopes_for_dm([]))
    await reopened.close()


class FailingDenseEmbedder(HashingDenseEmbedder):
    """Embeds two batches, then fails like an embeddings API that went down."""

    def __init__(self) -> None:
        super().__init__(name="flaky-dense")
        self.calls = 0

    async def embed_documents(self, texts: Sequence[str]) -> list[Embedding]:
        self.calls += 1
        if self.calls > 2:
            raise EmbeddingError("The embeddings API call failed (test).")
        return await super().embed_documents(texts)


async def test_failed_reindex_leaves_the_live_collection_untouched(
    corpus_kb: KnowledgeBase, store: VectorStore
) -> None:
    total = await store.count()
    flaky = KnowledgeBase(store, [FailingDenseEmbedder(), SparseLexicalEmbedder()], batch_size=4)
    with pytest.raises(EmbeddingError):
        await flaky.reindex()
    assert await store.count() == total
    hits = await corpus_kb.search("How do I roll back a bad release?", scopes_for_dm([]))
    assert hits and "deployctl" in hits[0].text
    # a later reindex with a working embedder succeeds over the leftovers
    fixed = KnowledgeBase(store, [HashingDenseEmbedder(), SparseLexicalEmbedder()], batch_size=4)
    assert await fixed.reindex() == total
    assert await store.count() == total
    assert (await fixed.search("roll back release", scopes_for_dm([])))[0].scores.keys() == {
        "dense",
        "sparse",
    }


async def test_edge_reindex_survives_reopen(tmp_path: Path) -> None:
    store = make_store("edge", tmp_path)
    await KnowledgeBase(store, [SparseLexicalEmbedder()]).add_paths(
        [CORPUS / "handbook"], Scope.workspace()
    )
    total = await store.count()
    await KnowledgeBase(store, [HashingDenseEmbedder()]).reindex()
    await store.close()
    reopened = make_store("edge", tmp_path)
    assert await reopened.count() == total
    hits = await KnowledgeBase(reopened, [HashingDenseEmbedder()]).search(
        "roll back a bad release", scopes_for_dm([])
    )
    assert hits and hits[0].scores.keys() == {"dense"}
    assert sorted(p.name for p in (tmp_path / "qdrant").iterdir()) == ["kb"]
    await reopened.close()


async def test_same_source_twice_in_one_batch_keeps_only_the_last_version(
    kb: KnowledgeBase, store: VectorStore
) -> None:
    v1 = Document("upload:n", "N", "n", Scope.workspace(), "The printer is on floor two.")
    v2 = Document("upload:n", "N", "n", Scope.workspace(), "The printer moved to floor five.")
    reports = await kb.add_documents([v1, v2])
    assert [(r.added, r.removed) for r in reports] == [(1, 0), (1, 1)]
    assert len(await store.ids_for_source("upload:n")) == 1
    hits = await kb.search("printer floor", scopes_for_dm([]))
    assert [h.text for h in hits] == ["The printer moved to floor five."]


SHARED_SECTION = (
    "# Release checklist\n\nBefore a release, freeze the main branch, run the smoke tests "
    "against staging, and post the changelog in #releases. Roll back with deployctl "
    "rollback if the error rate doubles within ten minutes."
)


async def test_identical_chunks_from_two_sources_are_one_hit_with_both_sources(
    kb: KnowledgeBase,
) -> None:
    await kb.add_document(
        Document("file:wiki/release.md", "Wiki", "wiki", Scope.workspace(), SHARED_SECTION)
    )
    await kb.add_document(
        Document("file:ops/runbook.md", "Runbook", "runbook", Scope.workspace(), SHARED_SECTION)
    )
    near = SHARED_SECTION.replace("ten minutes", "10 minutes")  # a near-duplicate copy
    await kb.add_document(Document("upload:copy", "Copy", "copy", Scope.workspace(), near))
    await kb.add_document(
        Document(
            "file:other.md", "Other", "other", Scope.workspace(), "Release notes go out weekly."
        )
    )
    hits = await kb.search("release checklist smoke tests", scopes_for_dm([]), limit=5)
    assert len(hits) == 2
    assert {s.source for s in hits[0].sources} == {
        "file:wiki/release.md",
        "file:ops/runbook.md",
        "upload:copy",
    }
    assert hits[0].sources[0].source == hits[0].source  # the hit's own source first
    assert hits[1].source == "file:other.md" and len(hits[1].sources) == 1


async def test_one_source_does_not_fill_the_top_k_while_others_match(kb: KnowledgeBase) -> None:
    sections = "\n\n".join(
        f"## Rollback step {i}\n\nRollback step {i}: run deployctl rollback --step {i}."
        for i in range(6)
    )
    await kb.add_document(
        Document("file:deploy.md", "Deploy", "d", Scope.workspace(), "# Deploy\n\n" + sections)
    )
    await kb.add_document(
        Document("file:faq.md", "FAQ", "f", Scope.workspace(), "A rollback is rare; ask #ops.")
    )
    hits = await kb.search("rollback", scopes_for_dm([]), limit=3)
    assert [h.source for h in hits][:2] == ["file:deploy.md", "file:faq.md"]
    assert len(hits) == 3  # with room left, the same source fills it
