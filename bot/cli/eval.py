"""`candor eval FILE.jsonl [--channel C] [--json]`: how well the confidence flags what it should.

Each line of FILE is `{"question": ..., "answerable": true|false}`. Every question is
asked once through the real pipeline (`ConversationManager.reply`: the channel's settings,
the knowledge base, the configured LLM, the spend ledger, the confidence), each in a
thread of its own, as user `candor-eval` in `--channel` (default `CLI`, as `candor chat`).

Printed, with unanswerable questions as the positive class:

* flag precision, recall and F1 at each answer's own flag (the channel's
  `flag_threshold`);
* AUROC of the confidence: the probability that an answerable question gets a higher
  confidence than an unanswerable one (ties count half; an answer without a confidence
  counts as 1.0, like one that is never flagged);
* the threshold that maximises the flag's F1 (flagged = confidence below it, or an
  abstention), with that F1.

`--json` prints one object with these numbers and every question's confidence, flag and
reasons. Each question is a real LLM call: it is billed like any other.
"""

from __future__ import annotations

import argparse
import itertools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.settings import ConfigError, Settings


@dataclass(frozen=True)
class Labelled:
    question: str
    answerable: bool


@dataclass
class EvalRow:
    """One question's outcome."""

    question: str
    answerable: bool
    confidence: float | None
    flagged: bool
    no_answer: bool = False
    reasons: list[str] = field(default_factory=list)
    signals: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answerable": self.answerable,
            "confidence": self.confidence,
            "flagged": self.flagged,
            "no_answer": self.no_answer,
            "reasons": list(self.reasons),
        }


def add_eval_parser(sub: Any) -> None:
    ev = sub.add_parser("eval", help="measure how well the confidence flags unanswerable questions")
    ev.add_argument("file", help='JSON Lines: {"question": ..., "answerable": true|false}')
    ev.add_argument("--channel", default="CLI", help="channel whose settings and scope apply")
    ev.add_argument("--workspace", default="local")
    ev.add_argument("--json", action="store_true", help="print one JSON object")


def load_labelled(path: str | Path) -> list[Labelled]:
    """The labelled questions; a bad line is a `ConfigError` naming it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror or type(exc).__name__}.") from None
    out: list[Labelled] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path} line {number} is not JSON.") from None
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("question"), str)
            or not item["question"].strip()
            or not isinstance(item.get("answerable"), bool)
        ):
            raise ConfigError(
                f'{path} line {number} needs {{"question": "...", "answerable": true|false}}.'
            )
        out.append(Labelled(item["question"], item["answerable"]))
    if not out:
        raise ConfigError(f"{path} has no questions.")
    return out


async def ask_all(
    manager: Any,
    questions: Sequence[Labelled],
    *,
    workspace: str = "local",
    channel: str = "CLI",
    user: str = "candor-eval",
) -> list[EvalRow]:
    """Ask every question through `manager.reply`, one thread each; keep what it judged."""
    from bot.conversation import Turn

    rows: list[EvalRow] = []
    for item in questions:
        key = uuid.uuid4().hex[:12]
        answer = await manager.reply(
            Turn(
                workspace_id=workspace,
                channel_id=channel,
                thread_ts=f"eval-{key}",
                user_id=user,
                text=item.question,
                event_id=f"eval-{key}",
            )
        )
        rows.append(
            EvalRow(
                question=item.question,
                answerable=item.answerable,
                confidence=answer.confidence,
                flagged=answer.flagged,
                no_answer=answer.no_answer,
                reasons=list(answer.reasons),
                signals=dict(answer.signals),
            )
        )
    return rows


def _conf(row: EvalRow) -> float:
    return 1.0 if row.confidence is None else row.confidence


def prf(flags: Sequence[bool], unanswerable: Sequence[bool]) -> tuple[float, float, float]:
    """Precision, recall and F1 of `flags` for the unanswerable questions."""
    tp = sum(1 for f, u in zip(flags, unanswerable, strict=True) if f and u)
    fp = sum(1 for f, u in zip(flags, unanswerable, strict=True) if f and not u)
    fn = sum(1 for f, u in zip(flags, unanswerable, strict=True) if not f and u)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """P(a positive's score > a negative's), ties half; None without both kinds."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return None
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def best_threshold(rows: Sequence[EvalRow]) -> tuple[float, float]:
    """The threshold (flag below it, or on abstention) with the best F1, and that F1.

    Candidates are midpoints between neighbouring confidences (and the ends); ties go to
    the lowest threshold, which flags least."""
    unanswerable = [not r.answerable for r in rows]
    values = sorted({_conf(r) for r in rows})
    candidates = [values[0]]
    candidates += [(a + b) / 2 for a, b in itertools.pairwise(values)]
    candidates.append(values[-1] + 1e-6)
    best = (0.0, -1.0)
    for t in candidates:
        flags = [r.no_answer or _conf(r) < t for r in rows]
        f1 = prf(flags, unanswerable)[2]
        if f1 > best[1] + 1e-12:
            best = (t, f1)
    return round(best[0], 4), best[1]


def summarize(rows: Sequence[EvalRow]) -> dict[str, Any]:
    """Every number `candor eval` prints (see the module docstring)."""
    unanswerable = [not r.answerable for r in rows]
    precision, recall, f1 = prf([r.flagged for r in rows], unanswerable)
    threshold, best_f1 = best_threshold(rows)
    return {
        "questions": len(rows),
        "unanswerable": sum(unanswerable),
        "flagged": sum(1 for r in rows if r.flagged),
        "flag_precision": round(precision, 4),
        "flag_recall": round(recall, 4),
        "flag_f1": round(f1, 4),
        "auroc": _round(auroc([_conf(r) for r in rows], [r.answerable for r in rows])),
        "best_threshold": threshold,
        "best_f1": round(best_f1, 4),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


async def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    from bot.deps import build_deps

    questions = load_labelled(args.file)
    if not settings.openai.base_url:
        settings.require("OPENAI_API_KEY")
    deps = await build_deps(settings)
    try:
        rows = await ask_all(
            deps.manager, questions, workspace=args.workspace, channel=args.channel
        )
    finally:
        await deps.close()
    report = summarize(rows)
    if args.json:
        print(json.dumps({**report, "results": [r.as_dict() for r in rows]}, ensure_ascii=False))
        return 0
    print(
        f"{report['questions']} questions, {report['unanswerable']} unanswerable, "
        f"{report['flagged']} flagged"
    )
    print(
        f"flag (unanswerable): precision {report['flag_precision']:.3f}  "
        f"recall {report['flag_recall']:.3f}  F1 {report['flag_f1']:.3f}"
    )
    auc = report["auroc"]
    print(f"AUROC of the confidence: {'n/a' if auc is None else f'{auc:.3f}'}")
    print(
        f"best threshold: {report['best_threshold']:.3f} (F1 {report['best_f1']:.3f}); "
        "set it with `/candor flag-threshold X`"
    )
    return 0
