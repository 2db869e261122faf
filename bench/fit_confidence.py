"""Fit the confidence weights (`bot/confidence/score.py`) on the shipped labelled set.

Run by hand (not part of the test suite)::

    .venv/bin/python bench/fit_confidence.py                  # sparse and local-hybrid
    .venv/bin/python bench/fit_confidence.py --embedders sparse --rows rows.json

For each embedder: the corpus `tests/knowledge/eval/stdlib/` is ingested into a fresh
embedded store, and every question of `tests/knowledge/eval/answerable.jsonl` goes
through the real pipeline (`candor eval`'s `ask_all`: channel settings, retrieval, the
prompt, the LLM call, the spend ledger, the confidence) with the fake LLM that restates
the question and cites [1] (`FakeOpenAIServer(restate=True)`, in this process).

Then an L2-regularised logistic regression (numpy; Newton's method on standardised
features, `--l2` on the standardised weights) predicts "answerable" from
`bot.confidence.score.features` over the rows of all embedders together. It prints:

* the weights, intercept and feature means as Python to paste into `score.py`;
* for the current `score.py` and for the fitted weights: AUROC and flag F1 per embedder,
  in-sample and by 5-fold cross-validation (folds by question, so a question's rows of
  every embedder are held out together), and the threshold maximising the pooled F1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.cli.eval import EvalRow, ask_all, auroc, best_threshold, load_labelled, prf
from bot.confidence import score

EVAL = ROOT / "tests" / "knowledge" / "eval"


async def collect(embedder: str, questions_file: Path) -> list[EvalRow]:
    from bot.deps import build_deps
    from bot.kb import ScopedKnowledge
    from bot.settings import load_settings
    from knowledge import Scope
    from tests.fakes.openai_server import FakeOpenAIServer

    questions = load_labelled(questions_file)
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeOpenAIServer(restate=True) as fake:
            os.environ.update(
                OPENAI_API_KEY="sk-fit",
                OPENAI_BASE_URL=fake.url,
                DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/candor.db",
                CANDOR_DATA_DIR=tmp,
                CANDOR_KB_EMBEDDER=embedder,
            )
            settings = load_settings(None)
            deps = await build_deps(settings)
            try:
                assert isinstance(deps.knowledge, ScopedKnowledge)
                await deps.knowledge.kb.add_paths([EVAL / "stdlib"], Scope.workspace())
                return await ask_all(deps.manager, questions)
            finally:
                await deps.close()


def matrix(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([[score.features(r["signals"])[f] for f in score.FEATURES] for r in rows])


def fit(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float, np.ndarray]:
    """Logistic regression; returns raw-feature weights, intercept and feature means."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    z = (x - mean) / std
    a = np.hstack([np.ones((len(z), 1)), z])
    w = np.zeros(a.shape[1])
    penalty = np.full(a.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-(a @ w)))
        grad = a.T @ (p - y) + penalty * w
        hess = (a.T * (p * (1 - p))) @ a + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    weights = w[1:] / std
    intercept = float(w[0] - (weights * mean).sum())
    return weights, intercept, mean


def predict(x: np.ndarray, weights: np.ndarray, intercept: float) -> np.ndarray:
    result: np.ndarray = 1 / (1 + np.exp(-(x @ weights + intercept)))
    return result


def report(name: str, rows: list[dict[str, Any]], conf: np.ndarray, threshold: float) -> str:
    rs = [
        EvalRow(r["question"], r["answerable"], float(c), bool(r["no_answer"] or c < threshold))
        for r, c in zip(rows, conf, strict=True)
    ]
    auc = auroc([float(c) for c in conf], [r["answerable"] for r in rows])
    _, _, f1 = prf([r.flagged for r in rs], [not r.answerable for r in rs])
    best, best_f1 = best_threshold(rs)
    return f"{name:34s} AUROC {auc:.3f}  F1@{threshold:.2f} {f1:.3f}  (best {best:.3f}: F1 {best_f1:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embedders", nargs="+", default=["sparse", "local-hybrid"])
    parser.add_argument("--questions", default=str(EVAL / "answerable.jsonl"))
    parser.add_argument("--rows", help="read rows from / write rows to this JSON file")
    parser.add_argument("--l2", type=float, default=1.0)
    args = parser.parse_args()

    rows_file = Path(args.rows) if args.rows else None
    by_embedder: dict[str, list[dict[str, Any]]] = {}
    if rows_file and rows_file.exists():
        by_embedder = json.loads(rows_file.read_text())
    for name in args.embedders:
        if name not in by_embedder:
            got = asyncio.run(collect(name, Path(args.questions)))
            by_embedder[name] = [{**r.as_dict(), "signals": r.signals} for r in got]
    if rows_file:
        rows_file.write_text(json.dumps(by_embedder, indent=1))

    names = [n for n in args.embedders if n in by_embedder]
    all_rows = [r for n in names for r in by_embedder[n]]
    x = matrix(all_rows)
    y = np.array([1.0 if r["answerable"] else 0.0 for r in all_rows])
    weights, intercept, mean = fit(x, y, args.l2)
    pooled = predict(x, weights, intercept)
    fitted_rows = [
        EvalRow(r["question"], r["answerable"], float(c), bool(r["no_answer"]))
        for r, c in zip(all_rows, pooled, strict=True)
    ]
    threshold, _ = best_threshold(fitted_rows)
    threshold = round(threshold, 2)

    # 5-fold cross-validation, folds by question
    questions = sorted({r["question"] for r in all_rows})
    random.Random(7).shuffle(questions)
    fold_of = {q: i % 5 for i, q in enumerate(questions)}
    cv = np.zeros(len(all_rows))
    for k in range(5):
        train = np.array([fold_of[r["question"]] != k for r in all_rows])
        w, b, _ = fit(x[train], y[train], args.l2)
        cv[~train] = predict(x[~train], w, b)

    current = np.array([score.assess(dict(r["signals"])).confidence or 0.0 for r in all_rows])
    print("# fitted by bench/fit_confidence.py " + " ".join(sys.argv[1:]))
    print(f"# rows: {len(all_rows)} ({', '.join(names)}), l2={args.l2}")
    print("WEIGHTS: dict[str, float] = {")
    for name, value in zip(score.FEATURES, weights, strict=True):
        print(f'    "{name}": {value:.4f},')
    print("}")
    print(f"INTERCEPT = {intercept:.4f}")
    print("MEANS: dict[str, float] = {")
    for name, value in zip(score.FEATURES, mean, strict=True):
        print(f'    "{name}": {value:.4f},')
    print("}")
    print(f"DEFAULT_FLAG_THRESHOLD = {threshold}")
    print()
    start = 0
    for name in names:
        n = len(by_embedder[name])
        part = slice(start, start + n)
        rows = all_rows[part]
        print(report(f"{name} score.py now", rows, current[part], score.DEFAULT_FLAG_THRESHOLD))
        print(report(f"{name} fitted, in-sample", rows, pooled[part], threshold))
        print(report(f"{name} fitted, 5-fold CV", rows, cv[part], threshold))
        start += n


if __name__ == "__main__":
    main()
