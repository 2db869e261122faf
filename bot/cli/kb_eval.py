"""`candor kb eval FILE.jsonl [--k 5] [--embedder E] [--channel C] [--json]`: retrieval quality.

Each line of FILE is `{"question": ..., "relevant": ["source name", ...]}` (an empty list
marks a question the knowledge base cannot answer). Every question is searched once,
as `candor kb search` would (the workspace scope, plus `--channel`'s), with one
embedder loaded for the whole file. Printed: recall@k, MRR@10, how well the top-1
score separates unanswerable questions (AUROC), and the questions whose relevant source
was not in the top k. `--json` prints one object with every number and each question's
top 10 hits, so the numbers can be recomputed. See `knowledge.evaluation` for the exact
definitions.

`--embedder` evaluates another embedder over the same collection (it must have been
built with it: otherwise the usual "run a reindex" error), or `textbook-bm25`, an
in-memory textbook BM25 over the collection's chunks, for comparison.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from bot.settings import ConfigError, Settings

EMBEDDERS = ("sparse", "openai", "hybrid", "minilm", "local-hybrid", "textbook-bm25")


def add_eval_parser(kb_sub: Any) -> None:
    ev = kb_sub.add_parser("eval", help="measure retrieval on labelled questions (JSON Lines)")
    ev.add_argument("file", help='JSON Lines: {"question": ..., "relevant": [source, ...]}')
    ev.add_argument("--k", type=int, default=5, help="recall is measured in the top k (5)")
    ev.add_argument("--embedder", choices=EMBEDDERS, help="default: CANDOR_KB_EMBEDDER")
    ev.add_argument("--channel", help="read this channel's scope too")
    ev.add_argument("--json", action="store_true", help="print one JSON object")


def embedder_hint(settings: Settings) -> str | None:
    """After `candor kb add`: mention `local-hybrid` when MiniLM is installed and unused."""
    from bot.kb import minilm_installed

    real_openai = settings.openai.api_key is not None and not settings.openai.base_url
    if settings.candor.kb_embedder != "auto" or real_openai or not minilm_installed():
        return None
    return (
        "MiniLM is installed: CANDOR_KB_EMBEDDER=local-hybrid fuses it with the sparse "
        "retriever (better on paraphrased questions; then run `candor kb reindex`)."
    )


async def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    from bot.deps import build_openai
    from bot.kb import build_knowledge_base, choose_embedders
    from bot.tokens import TokenCounter
    from knowledge import EmbeddingError, scopes_for_channel, scopes_for_dm
    from knowledge.evaluation import (
        EvalFileError,
        TextbookBM25,
        evaluate,
        load_questions,
    )
    from knowledge.retriever import Hit

    if args.k < 1:
        raise ConfigError("--k must be at least 1.")
    try:
        questions = load_questions(args.file)
    except EvalFileError as exc:
        raise ConfigError(str(exc)) from None
    allowed = (
        scopes_for_channel(args.channel, channel_private=True)
        if args.channel
        else scopes_for_dm(())
    )
    client = build_openai(settings)
    tokens = TokenCounter(settings.candor.data_dir / "tiktoken")
    kb = build_knowledge_base(settings, tokens, client)
    try:
        if args.embedder == "textbook-bm25":
            baseline = TextbookBM25()
            async for batch in kb.store.scroll_payloads():
                for chunk_id, payload in batch:
                    baseline.add(chunk_id, payload)

            async def search(question: str, limit: int) -> Sequence[Hit]:
                return baseline.search(question, limit, allowed.keys)
        else:
            if args.embedder:
                from knowledge import Retriever

                kb.retriever = Retriever(
                    kb.store, choose_embedders(settings, client, args.embedder)
                )

            async def search(question: str, limit: int) -> Sequence[Hit]:
                return await kb.search(question, allowed, limit=limit)

        try:
            report = await evaluate(search, questions, args.k)
        except EmbeddingError as exc:
            if isinstance(exc.__cause__, ImportError):  # the minilm extra is missing
                raise ConfigError(str(exc)) from None
            raise
    finally:
        await kb.close()
        await client.close()
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        _print_report(report)
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _print_report(report: Any) -> None:
    answerable = sum(1 for r in report.results if r.question.relevant)
    unanswerable = len(report.results) - answerable
    print(f"{len(report.results)} questions ({answerable} answerable, {unanswerable} unanswerable)")
    print(f"recall@{report.k}: {_fmt(report.recall_at_k)}")
    print(f"MRR@10:    {_fmt(report.mrr_at_10)}")
    print(f"AUROC of the top-1 score for unanswerable questions: {_fmt(report.auroc_unanswerable)}")
    misses = report.misses()
    if misses:
        print(f"\nMissed in the top {report.k} ({len(misses)}):")
    for miss in misses:
        got = ", ".join(h.title or h.source for h in miss.hits[: report.k]) or "no hits"
        print(
            f"  {miss.question.question}\n    wanted {', '.join(miss.question.relevant)}; got {got}"
        )
