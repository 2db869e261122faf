"""Retrieval evaluation: labelled questions in, recall@k, MRR@10 and AUROC out.

A labelled set is JSON Lines, one question a line::

    {"question": "How do I delete a directory tree?", "relevant": ["shutil"]}
    {"question": "How do I parse TOML?", "relevant": []}        # unanswerable

A name in ``relevant`` matches a hit when it equals the hit's source, its title, or its
file name without extension (``file:/docs/shutil.md`` -> ``shutil``), for any of the
sources a collapsed hit holds. Metrics (:func:`evaluate`):

* ``recall_at_k`` — over answerable questions, the share of their relevant names found
  in the top ``k`` hits, averaged;
* ``mrr_at_10`` — over answerable questions, 1 / rank of the first relevant hit within
  the top 10 (0 if none), averaged;
* ``auroc_unanswerable`` — how well the top-1 score separates answerable from
  unanswerable questions: the probability that an answerable question's top score is
  higher than an unanswerable one's (ties count half; no hit counts as the lowest
  score). ``None`` unless both kinds of question are present.

:class:`TextbookBM25` is the baseline we compare against: Lucene-style BM25 in memory
over the same chunks (``\\w+`` lower-case tokens, no stemming, no stop words, the real
average length).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowledge.retriever import Hit, SourceRef


class EvalFileError(ValueError):
    """The labelled set cannot be read; the message names the line and the problem."""


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    relevant: tuple[str, ...]


@dataclass(frozen=True)
class QuestionResult:
    question: EvalQuestion
    hits: tuple[Hit, ...]  # top 10 at most, best first
    first_relevant_rank: int | None  # 1-based, within the hits

    @property
    def top_score(self) -> float | None:
        return self.hits[0].rank_score if self.hits else None


@dataclass(frozen=True)
class EvalReport:
    k: int
    recall_at_k: float | None
    mrr_at_10: float | None
    auroc_unanswerable: float | None
    results: tuple[QuestionResult, ...]

    def misses(self) -> list[QuestionResult]:
        """Answerable questions with no relevant hit in the top ``k``."""
        return [
            r
            for r in self.results
            if r.question.relevant
            and (r.first_relevant_rank is None or r.first_relevant_rank > self.k)
        ]

    def to_json(self) -> dict[str, Any]:
        """Every number, and every question's top-10 hits, so others can recompute them."""
        return {
            "k": self.k,
            "recall_at_k": self.recall_at_k,
            "mrr_at_10": self.mrr_at_10,
            "auroc_unanswerable": self.auroc_unanswerable,
            "questions": [
                {
                    "question": r.question.question,
                    "relevant": list(r.question.relevant),
                    "hits": [
                        {"source": h.source, "title": h.title, "score": h.rank_score}
                        | (
                            {"also": [s.source for s in h.sources[1:]]}
                            if len(h.sources) > 1
                            else {}
                        )
                        for h in r.hits
                    ],
                }
                for r in self.results
            ],
        }


def load_questions(path: str | Path) -> list[EvalQuestion]:
    """Read a labelled set; :class:`EvalFileError` names the first bad line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalFileError(f"Cannot read {path}: {exc.__class__.__name__}.") from None
    out: list[EvalQuestion] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise EvalFileError(f"{path}:{number} is not valid JSON.") from None
        question = row.get("question") if isinstance(row, dict) else None
        relevant = row.get("relevant") if isinstance(row, dict) else None
        if not isinstance(question, str) or not question.strip():
            raise EvalFileError(f'{path}:{number} needs a non-empty "question" string.')
        if not isinstance(relevant, list) or not all(isinstance(r, str) for r in relevant):
            raise EvalFileError(f'{path}:{number} needs "relevant": a list of source names.')
        out.append(EvalQuestion(question, tuple(relevant)))
    if not out:
        raise EvalFileError(f"{path} holds no questions.")
    return out


def _file_stem(source: str) -> str:
    name = source.split(":", 1)[1] if re.match(r"^[a-z]+:", source) else source
    name = name.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def names_of(ref: SourceRef) -> set[str]:
    """The names a labelled set may use for a source: source, title, file name w/o extension."""
    return {ref.source, ref.title, _file_stem(ref.source)} - {""}


def _refs(hit: Hit) -> Sequence[SourceRef]:
    return hit.sources or (hit.ref(),)


def matched(hit: Hit, relevant: Iterable[str]) -> set[str]:
    """Which of the ``relevant`` names this hit (or a duplicate collapsed into it) matches."""
    names: set[str] = set()
    for ref in _refs(hit):
        names |= names_of(ref)
    return names & set(relevant)


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """P(positive > negative), ties half; ``None`` if either side is empty."""
    if not positives or not negatives:
        return None
    wins = 0.0
    for p in positives:
        for n in negatives:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(positives) * len(negatives))


SearchFn = Callable[[str, int], Awaitable[Sequence[Hit]]]


async def evaluate(search: SearchFn, questions: Sequence[EvalQuestion], k: int = 5) -> EvalReport:
    """Run every question through ``search(question, limit)`` once and score the results."""
    depth = max(k, 10)
    results: list[QuestionResult] = []
    recalls: list[float] = []
    reciprocal: list[float] = []
    for q in questions:
        hits = tuple((await search(q.question, depth))[:depth])
        rank: int | None = None
        found: set[str] = set()
        for i, hit in enumerate(hits, start=1):
            names = matched(hit, q.relevant)
            if names and rank is None:
                rank = i
            if i <= k:
                found |= names
        results.append(QuestionResult(q, hits[:10], rank))
        if q.relevant:
            recalls.append(len(found) / len(set(q.relevant)))
            reciprocal.append(1.0 / rank if rank is not None and rank <= 10 else 0.0)
    lowest = -math.inf
    positives = [
        r.top_score if r.top_score is not None else lowest for r in results if r.question.relevant
    ]
    negatives = [
        r.top_score if r.top_score is not None else lowest
        for r in results
        if not r.question.relevant
    ]
    return EvalReport(
        k=k,
        recall_at_k=sum(recalls) / len(recalls) if recalls else None,
        mrr_at_10=sum(reciprocal) / len(reciprocal) if reciprocal else None,
        auroc_unanswerable=auroc(positives, negatives),
        results=tuple(results),
    )


# ---------------------------------------------------------------------- baseline

_PLAIN = re.compile(r"\w+")


class TextbookBM25:
    """Plain BM25 in memory, for comparison: ``\\w+`` lower-case tokens, no stemming, no
    stop words, Lucene IDF ``ln(1 + (N - n + 0.5) / (n + 0.5))``, the real average length."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._docs: list[tuple[Hit, Counter[str], int]] = []
        self._df: Counter[str] = Counter()

    def add(self, chunk_id: str, payload: dict[str, Any]) -> None:
        text = str(payload.get("text", ""))
        tokens = _PLAIN.findall(text.lower())
        hit = Hit(
            chunk_id=chunk_id,
            text=text,
            source=str(payload.get("source", "")),
            title=str(payload.get("title", "")),
            link=str(payload.get("link", "")),
            scope=str(payload.get("scope", "")),
            score=0.0,
            headings=tuple(str(h) for h in payload.get("headings") or ()),
            retriever="textbook-bm25",
        )
        counts = Counter(tokens)
        self._docs.append((hit, counts, len(tokens)))
        self._df.update(counts.keys())

    def search(self, query: str, limit: int, scopes: Iterable[str] | None = None) -> list[Hit]:
        allowed = set(scopes) if scopes is not None else None
        n = len(self._docs)
        if not n:
            return []
        avg = sum(length for _, _, length in self._docs) / n
        terms = set(_PLAIN.findall(query.lower()))
        idf = {t: math.log(1 + (n - self._df[t] + 0.5) / (self._df[t] + 0.5)) for t in terms}
        scored: list[tuple[float, Hit]] = []
        for hit, counts, length in self._docs:
            if allowed is not None and hit.scope not in allowed:
                continue
            norm = self.k1 * (1 - self.b + self.b * length / avg)
            score = sum(
                idf[t] * counts[t] * (self.k1 + 1) / (counts[t] + norm)
                for t in terms
                if t in counts
            )
            if score > 0:
                scored.append((score, hit))
        scored.sort(key=lambda sh: (-sh[0], sh[1].chunk_id))
        return [
            Hit(
                chunk_id=h.chunk_id,
                text=h.text,
                source=h.source,
                title=h.title,
                link=h.link,
                scope=h.scope,
                score=s,
                scores={"sparse": s},
                rank_score=s,
                headings=h.headings,
                retriever=h.retriever,
                sources=(h.ref(),),
            )
            for s, h in scored[:limit]
        ]
