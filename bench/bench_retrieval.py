"""Retrieval quality on the shipped labelled set, for every offline embedder.

Run by hand (not part of the test suite)::

    python bench/bench_retrieval.py                      # sparse, textbook BM25, minilm, local-hybrid
    python bench/bench_retrieval.py --embedders sparse textbook-bm25 --k 5 --json out.json

The corpus (``tests/knowledge/eval/stdlib/``, Markdown rendered from standard-library
docstrings) is ingested into a temporary Qdrant Edge store through ``KnowledgeBase``
(the same chunker as ``candor kb add``, tiktoken counts when available) and
``tests/knowledge/eval/questions.jsonl`` is evaluated with ``knowledge.evaluation``,
exactly as ``candor kb eval`` does. ``textbook-bm25`` is the in-memory baseline over the
same chunks. ``minilm`` and ``local-hybrid`` need the ``minilm`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from knowledge import (
    Embedder,
    KnowledgeBase,
    MiniLMEmbedder,
    Scope,
    SparseLexicalEmbedder,
    open_store,
    scopes_for_dm,
)
from knowledge.evaluation import EvalReport, TextbookBM25, evaluate, load_questions
from knowledge.retriever import Hit

HERE = Path(__file__).resolve().parent.parent / "tests" / "knowledge" / "eval"


def _counter() -> Callable[[str], int]:
    try:
        from bot.tokens import TokenCounter

        return TokenCounter().counter_for("gpt-4o")
    except Exception:  # pragma: no cover - fall back to the package's estimate
        from knowledge import estimate_tokens

        return estimate_tokens


def embedders_for(name: str, minilm: list[MiniLMEmbedder]) -> list[Embedder]:
    if name in ("sparse", "textbook-bm25"):
        return [SparseLexicalEmbedder()]
    if not minilm:
        minilm.append(MiniLMEmbedder())
    if name == "minilm":
        return [minilm[0]]
    return [minilm[0], SparseLexicalEmbedder()]  # local-hybrid


async def run(name: str, k: int, minilm: list[MiniLMEmbedder], **retriever: float) -> EvalReport:
    questions = load_questions(HERE / "questions.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(None, None, tmp, "eval")
        kb = KnowledgeBase(store, embedders_for(name, minilm), count_tokens=_counter())
        for key, value in retriever.items():
            setattr(kb.retriever, key, value)
        await kb.add_paths([HERE / "stdlib"], Scope.workspace())
        allowed = scopes_for_dm(())
        if name == "textbook-bm25":
            baseline = TextbookBM25()
            async for batch in store.scroll_payloads():
                for cid, payload in batch:
                    baseline.add(cid, payload)

            async def search(q: str, limit: int) -> Sequence[Hit]:
                return baseline.search(q, limit, allowed.keys)
        else:

            async def search(q: str, limit: int) -> Sequence[Hit]:
                return await kb.search(q, allowed, limit=limit)

        report = await evaluate(search, questions, k)
        await kb.close()
        return report


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--embedders",
        nargs="+",
        default=["textbook-bm25", "sparse", "minilm", "local-hybrid"],
    )
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--json", help="write every report to this file")
    parser.add_argument("--misses", action="store_true", help="print the missed questions")
    args = parser.parse_args()
    minilm: list[MiniLMEmbedder] = []
    reports = {}
    print(f"| embedder | recall@{args.k} | MRR@10 | AUROC (unanswerable) |")
    print("|---|---|---|---|")
    for name in args.embedders:
        report = await run(name, args.k, minilm)
        reports[name] = report.to_json()
        print(
            f"| {name} | {_fmt(report.recall_at_k)} | {_fmt(report.mrr_at_10)} "
            f"| {_fmt(report.auroc_unanswerable)} |"
        )
        if args.misses:
            for miss in report.misses():
                got = [h.source.rsplit("/", 1)[-1] for h in miss.hits[:3]]
                print(f"    miss: {miss.question.question} {miss.question.relevant} -> {got}")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
