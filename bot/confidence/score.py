"""One confidence in 0..1 from the signals, the reasons a person reads, and the flag.

The combination (README, "How Candor knows it is unsure"):

1. **Retrieval and grounding** (when the knowledge base was searched): a logistic
   regression over `features()`, with the weights in `WEIGHTS`. They were fitted, not
   chosen: `bench/fit_confidence.py` runs every question of
   `tests/knowledge/eval/answerable.jsonl` through the real pipeline (the fake LLM that
   restates the question and cites [1]) with the `sparse` and the `local-hybrid`
   embedders, and fits an L2-regularised logistic regression (numpy, standardised
   features, then folded back) on both runs together, so one set of weights serves either
   embedder (`has_dense` tells them apart).
2. **Model** (token logprobs, when the server sends them): not fitted — the offline
   labelled set has no real model behind it — so they only act when clearly low: a mean
   token probability under `UNSURE_TOKEN_PROB` lowers the log-odds by `UNSURE_PENALTY`
   and says "the model was unsure". Without a knowledge base they are the score.
3. **Judge** (optional second call): its P(yes) is averaged with the score in log-odds
   (equal weights; an assumption, also not fitted for the same reason).
4. **Citations** the fitting set cannot teach (its fake always cites [1]): a citation of
   a source that does not exist costs `MISSING_CITATION_PENALTY` in log-odds, no citation
   at all despite sources `NO_CITATION_PENALTY` (both unfitted, documented choices).
5. **Abstention**: "I don't know" / "the sources do not cover this" is an honest answer:
   `no_answer`, flagged (so a person can be asked), confidence at most `ABSTAIN_CAP`.

Reasons are sentences ordered by how much each lowered the log-odds (a fitted feature:
its weight times its distance below the average answer); retrieval reasons are named only
for a flagged answer, explicit problems (a missing source, an unsure model, a judge's
"no") always. `flagged` is `confidence < threshold` (the channel's `flag_threshold`, default
`DEFAULT_FLAG_THRESHOLD`: the threshold that maximised the flag's F1 on the fitting runs).
With no signal at all (no knowledge base, no logprobs, no judge) there is no
confidence and no flag.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The default of a channel's `flag_threshold` (see the module docstring).
DEFAULT_FLAG_THRESHOLD = 0.56
#: Mean token probability under which the model counts as unsure (not fitted).
UNSURE_TOKEN_PROB = 0.5
UNSURE_PENALTY = 1.0
#: An abstention's confidence is at most this.
ABSTAIN_CAP = 0.2
#: Unfitted log-odds penalties: a citation of a source that does not exist, no citation
#: at all although sources were found.
MISSING_CITATION_PENALTY = 2.0
NO_CITATION_PENALTY = 0.5
#: A reason is named when it lowered the log-odds by more than this.
MIN_PULL = 0.25

NO_SOURCE_REASON = "no source in the knowledge base covers this question"

# --- fitted by bench/fit_confidence.py (see the module docstring); do not edit by hand --
FEATURES = (
    "bm25",
    "fused",
    "has_dense",
    "dense",
    "coverage_top1",
    "coverage_top3",
    "cited_overlap",
)
# `.venv/bin/python bench/fit_confidence.py --l2 0.3`: 166 rows (83 questions x sparse,
# local-hybrid), L2 0.3 on standardised weights. 5-fold CV by question: AUROC 0.888 /
# 0.917, flag F1 at 0.56: 0.679 / 0.808 (sparse / local-hybrid).
WEIGHTS: dict[str, float] = {
    "bm25": 3.8051,
    "fused": 1.2439,
    "has_dense": -3.5444,
    "dense": 7.0240,
    "coverage_top1": 3.7566,
    "coverage_top3": 1.4658,
    "cited_overlap": 1.7459,
}
INTERCEPT = -13.1675
#: Feature means over the fitting rows: a reason's weight is its pull below the mean.
MEANS: dict[str, float] = {
    "bm25": 3.0159,
    "fused": 0.2562,
    "has_dense": 0.5000,
    "dense": 0.2678,
    "coverage_top1": 0.3988,
    "coverage_top3": 0.5945,
    "cited_overlap": 0.5318,
}
# -------------------------------------------------------------------------------------


@dataclass
class Assessment:
    """What the manager puts on the `Answer`."""

    confidence: float | None
    flagged: bool
    reasons: list[str] = field(default_factory=list)
    no_answer: bool = False
    signals: dict[str, Any] = field(default_factory=dict)


def features(signals: Mapping[str, Any]) -> dict[str, float]:
    """The fitted model's inputs; a missing signal is 0 (its indicator says so)."""
    return {
        "bm25": math.log1p(max(0.0, float(signals.get("best_sparse") or 0.0))),
        "fused": float(signals.get("best_fused") or 0.0),
        "has_dense": 1.0 if "best_dense" in signals else 0.0,
        "dense": float(signals.get("best_dense") or 0.0),
        "coverage_top1": float(signals.get("coverage_top1") or 0.0),
        "coverage_top3": float(signals.get("coverage_top3") or 0.0),
        "cited_overlap": float(signals.get("cited_overlap") or 0.0),
    }


def retrieval_logit(signals: Mapping[str, Any]) -> float:
    """The fitted log-odds that the answer is supported (knowledge base searched)."""
    x = features(signals)
    return INTERCEPT + sum(WEIGHTS[name] * x[name] for name in FEATURES)


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def assess(
    signals: dict[str, Any],
    *,
    threshold: float = DEFAULT_FLAG_THRESHOLD,
    judge_p_yes: float | None = None,
) -> Assessment:
    """One confidence, the reasons (main first), the flag and "no answer found"."""
    pulls: list[tuple[float, str]] = []  # (how much it lowered the log-odds, reason)
    retrieval: list[tuple[float, str]] = []  # named only when the answer is flagged
    z: float | None = None
    if "hits" in signals:
        z = retrieval_logit(signals)
        retrieval = _retrieval_reasons(signals)
        delta, cited = _citation_rules(signals)
        z += delta
        pulls.extend(cited)
    if "logprob_mean" in signals:
        prob = math.exp(float(signals["logprob_mean"]))
        if z is None:
            z = logit(prob)
        elif prob < UNSURE_TOKEN_PROB:
            z -= UNSURE_PENALTY
        if prob < UNSURE_TOKEN_PROB:
            pulls.append((UNSURE_PENALTY, "the model was unsure"))
    if judge_p_yes is not None:
        signals["judge_p_yes"] = judge_p_yes
        judged = logit(judge_p_yes)
        z = judged if z is None else 0.5 * z + 0.5 * judged
        if judge_p_yes < 0.5:
            pulls.append(
                (-judged, "a second model judged that the sources do not support this answer")
            )
    no_answer = bool(signals.get("abstained"))
    confidence = None if z is None else round(sigmoid(z), 4)
    if no_answer:
        confidence = min(confidence if confidence is not None else ABSTAIN_CAP, ABSTAIN_CAP)
        pulls.append((math.inf, "the model found no answer in the sources"))
    flagged = no_answer or (confidence is not None and confidence < threshold)
    if flagged:
        pulls.extend(retrieval)
    reasons = [text for pull, text in sorted(pulls, key=lambda p: -p[0]) if pull > MIN_PULL]
    return Assessment(
        confidence=confidence,
        flagged=flagged,
        reasons=_unique(reasons),
        no_answer=no_answer,
        signals=signals,
    )


def no_source_assessment(signals: dict[str, Any]) -> Assessment:
    """Strict mode with nothing over the floor: no LLM call, an honest "no source"."""
    return Assessment(
        confidence=0.0,
        flagged=True,
        reasons=[NO_SOURCE_REASON],
        no_answer=True,
        signals=signals,
    )


#: Features that exist only where a dense retriever ran.
_DENSE_ONLY = ("fused", "dense")


def _pull(name: str, value: float) -> float:
    """How much feature `name` at `value` lowered the log-odds below the average answer
    (for a dense-only feature: the average answer that had a dense retriever)."""
    mean = MEANS[name]
    if name in _DENSE_ONLY and MEANS["has_dense"] > 0:
        mean /= MEANS["has_dense"]
    return -WEIGHTS[name] * (value - mean)


def _retrieval_reasons(signals: Mapping[str, Any]) -> list[tuple[float, str]]:
    x = features(signals)
    if not signals.get("hits"):
        return [(math.inf, NO_SOURCE_REASON)]
    out: list[tuple[float, str]] = []
    uncovered = [str(t) for t in signals.get("uncovered") or []]
    if uncovered:
        coverage = _pull("coverage_top1", x["coverage_top1"])
        coverage += _pull("coverage_top3", x["coverage_top3"])
        out.append((coverage, f"no source covers '{uncovered[0]}'"))
    present = ["bm25"] if "best_sparse" in signals else []
    if x["has_dense"]:
        present += list(_DENSE_ONLY)
    strength = sum(_pull(name, x[name]) for name in present)
    out.append((strength, "the best matching source is a weak match"))
    if "cited_overlap" in signals:
        out.append(
            (
                _pull("cited_overlap", x["cited_overlap"]),
                "the cited sources do not say what the answer says",
            )
        )
    return out


def _citation_rules(signals: Mapping[str, Any]) -> tuple[float, list[tuple[float, str]]]:
    """Unfitted penalties (the labelled set's fake always cites [1]): log-odds, reasons."""
    delta = 0.0
    out: list[tuple[float, str]] = []
    for n in signals.get("missing_citations") or []:
        delta -= MISSING_CITATION_PENALTY
        out.append((MISSING_CITATION_PENALTY + 5.0, f"cites [{n}], which does not exist"))
    if signals.get("hits") and not signals.get("cites"):
        delta -= NO_CITATION_PENALTY
        out.append((NO_CITATION_PENALTY, "the answer cites no source"))
    return delta, out


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
