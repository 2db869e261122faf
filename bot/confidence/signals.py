"""The raw signals of one answer, computed without another LLM call.

`compute_signals` returns a plain dict (stored with the answer as JSON). Every group is
optional and is left out when its input is missing:

retrieval (when the knowledge base was searched)
    ``hits``; ``best_score`` (raw similarity of the first configured retriever);
    ``best_sparse`` / ``best_sparse_norm`` (BM25, and BM25 mapped to [0, 1] as the
    retriever's fusion does: ``s / (s + 3 n)`` with ``n`` query terms); ``best_dense``
    (cosine, when a dense retriever ran); ``best_fused`` (with a dense retriever: the
    retriever's equal-weight fusion of cosine and mapped BM25); ``hits_over_floor``; ``coverage_top1`` and
    ``coverage_top3`` — the share of the question's terms (the sparse retriever's
    tokenizer) found in the top hit / top three hits, each term weighted by an IDF
    computed over the retrieved hits (``log((N + 1) / (df + 0.5))``: a term no hit holds
    weighs most, one every hit holds little); ``uncovered`` — the heaviest terms no top
    hit holds, for the reason a person reads.
grounding (always, from the answer text)
    ``cites``; ``cited`` (numbers); ``missing_citations`` (cited numbers no source has);
    ``cited_sentence_share`` (answer sentences carrying a citation); ``cited_overlap``
    (over cited sentences, the mean share of the sentence's terms found in the sources
    it cites).
model (when the server returned token logprobs)
    ``logprob_mean``, ``logprob_p10`` (10th percentile), ``logprob_tokens``.
abstention
    ``abstained``: the answer says it does not know, or that the sources do not cover the
    question (English, plus common French, German and Spanish phrasings).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from bot.ports import RetrievedHit
from knowledge.textproc import distinct, has_terms, terms

#: The retriever's fusion maps BM25 ``s`` to ``s / (s + SPARSE_SCALE * n)``; so do we.
SPARSE_SCALE = 3.0
#: Hits read for the top-three coverage.
TOP_HITS = 3

_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")

_ABSTAIN = re.compile(
    r"|".join(
        [
            # English
            r"\bi (?:do not|don't|don’t) know\b",
            r"\bi(?:'m| am) not (?:sure|certain)\b",
            r"\bi (?:could not|couldn't|couldn’t|cannot|can't|can’t|was unable to|am unable to)"
            r" (?:find|answer|tell|determine|see)\b",
            r"\b(?:the |these |provided |available )?(?:sources?|documents?|reference data|"
            r"knowledge base|context|references?)(?: provided)? (?:do not|don't|don’t|does not|"
            r"doesn't|doesn’t|did not|didn't) (?:cover|contain|mention|say|include|address|"
            r"answer|describe|discuss|explain|provide)\b",
            r"\bnot (?:covered|mentioned|addressed|found|included|described)"
            r" (?:in|by) (?:the |any of the |these )?(?:provided )?"
            r"(?:sources?|documents?|reference data|knowledge base|context)\b",
            r"\bno (?:information|source|sources|mention|details|documentation)"
            r" (?:about|on|of|regarding|that|in)\b",
            r"\bthere is no (?:information|source|mention)\b",
            r"\bi (?:do not|don't|don’t) have (?:enough |any )?(?:information|sources?|data)\b",
            # French, German, Spanish
            r"\bje ne sais pas\b",
            r"\bles sources ne (?:couvrent|mentionnent|contiennent)\b",
            r"\bich wei(?:ß|ss) (?:es )?nicht\b",
            r"\bdie quellen (?:enthalten|erwähnen|behandeln) (?:das |dies )?(?:nicht|keine)\b",
            r"\bno (?:lo )?sé\b",
            r"\blas fuentes no (?:cubren|mencionan|contienen)\b",
        ]
    ),
    re.I,
)


def abstained(answer: str) -> bool:
    """Whether `answer` says it does not know, or that the sources do not cover it."""
    return bool(_ABSTAIN.search(answer))


def cited_numbers(answer: str) -> list[int]:
    """Every number cited as ``[n]`` or ``[n, m]``, in order, without repeats."""
    found: list[int] = []
    for match in _CITATION.finditer(answer):
        for part in match.group(1).split(","):
            n = int(part)
            if n not in found:
                found.append(n)
    return found


def compute_signals(
    question: str,
    answer: str,
    hits: Sequence[RetrievedHit],
    *,
    retrieval_ran: bool,
    score_floor: float = 0.0,
    token_logprobs: Sequence[float] = (),
) -> dict[str, Any]:
    """The signals of one answer; see the module docstring for each key."""
    signals: dict[str, Any] = {}
    if retrieval_ran:
        signals.update(_retrieval(question, hits, score_floor))
    signals.update(_grounding(answer, hits))
    if token_logprobs:
        values = sorted(token_logprobs)
        signals["logprob_mean"] = sum(values) / len(values)
        signals["logprob_p10"] = values[int(0.1 * (len(values) - 1))]
        signals["logprob_tokens"] = len(values)
    signals["abstained"] = abstained(answer)
    return signals


def _retrieval(question: str, hits: Sequence[RetrievedHit], floor: float) -> dict[str, Any]:
    out: dict[str, Any] = {"hits": len(hits)}
    if not hits:
        out.update(hits_over_floor=0, coverage_top1=0.0, coverage_top3=0.0)
        out["uncovered"] = distinct(terms(question))[:3]
        return out
    query_terms = distinct(terms(question))
    n_terms = max(1, len(query_terms))
    out["best_score"] = max(h.score for h in hits)
    sparse = [h.scores["sparse"] for h in hits if "sparse" in h.scores]
    dense = [h.scores["dense"] for h in hits if "dense" in h.scores]
    if sparse:
        best = max(0.0, max(sparse))
        out["best_sparse"] = best
        out["best_sparse_norm"] = _sparse_norm(best, n_terms)
    if dense:
        out["best_dense"] = max(dense)
        # The retriever's calibrated fusion (equal weights), per hit; a score one
        # retriever did not return counts as 0 here.
        out["best_fused"] = max(
            0.5 * min(1.0, max(0.0, h.scores.get("dense", 0.0)))
            + 0.5 * _sparse_norm(h.scores.get("sparse", 0.0), n_terms)
            for h in hits
        )
    out["hits_over_floor"] = sum(1 for h in hits if h.score >= floor)
    hit_terms = [set(terms(h.text)) | set(terms(h.title)) for h in hits]
    weights = {
        t: math.log((len(hits) + 1) / (sum(1 for ts in hit_terms if t in ts) + 0.5))
        for t in query_terms
    }
    total = sum(weights.values())
    for name, top in (("coverage_top1", 1), ("coverage_top3", TOP_HITS)):
        seen = set().union(*hit_terms[:top])
        covered = sum(w for t, w in weights.items() if t in seen)
        out[name] = covered / total if total > 0 else 0.0
    seen = set().union(*hit_terms[:TOP_HITS])
    missing = sorted((t for t in query_terms if t not in seen), key=lambda t: -weights[t])
    out["uncovered"] = missing[:3]
    return out


def _sparse_norm(raw: float, n_terms: int) -> float:
    raw = max(0.0, raw)
    return raw / (raw + SPARSE_SCALE * n_terms)


def _grounding(answer: str, hits: Sequence[RetrievedHit]) -> dict[str, Any]:
    by_index = {h.index: h for h in hits}
    cited = cited_numbers(answer)
    sentences = [s for s in _SENTENCE_END.split(answer) if has_terms(_CITATION.sub(" ", s))]
    with_citation = [s for s in sentences if _CITATION.search(s)]
    overlaps: list[float] = []
    source_terms: dict[int, set[str]] = {}
    for sentence in with_citation:
        numbers = [n for n in cited_numbers(sentence) if n in by_index]
        words = set(terms(_CITATION.sub(" ", sentence)))
        if not numbers or not words:
            continue
        known: set[str] = set()
        for n in numbers:
            if n not in source_terms:
                hit = by_index[n]
                source_terms[n] = set(terms(hit.text)) | set(terms(hit.title))
            known |= source_terms[n]
        overlaps.append(len(words & known) / len(words))
    out: dict[str, Any] = {
        "cites": bool(cited),
        "cited": cited,
        "missing_citations": [n for n in cited if n not in by_index],
        "cited_sentence_share": len(with_citation) / len(sentences) if sentences else 0.0,
    }
    if overlaps:
        out["cited_overlap"] = sum(overlaps) / len(overlaps)
    return out
