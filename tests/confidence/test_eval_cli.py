"""`candor eval` and `candor chat --once --json` end to end (real CLI, fake LLM)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.cli.eval import EvalRow, auroc, best_threshold, prf, summarize
from bot.cli.main import main
from bot.settings import Settings
from tests.confidence.test_confidence import DOCS
from tests.fakes.openai_server import FakeOpenAIServer


async def run(argv: Sequence[str]) -> int:
    return await asyncio.to_thread(main, list(argv))


async def add_docs(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / f"{name}.md").write_text(text + "\n")
    assert await run(["kb", "add", str(docs)]) == 0


async def test_eval_prints_flag_quality_auroc_and_best_threshold(
    settings: Settings,
    fake_llm: FakeOpenAIServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await add_docs(tmp_path)
    fake_llm.restate = True
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(
        "\n".join(
            json.dumps(item)
            for item in [
                {"question": "How do I roll back a bad deploy?", "answerable": True},
                {"question": "How do I request vacation days?", "answerable": True},
                {"question": "What is the wifi password?", "answerable": False},
                {"question": "Which parking spot is mine?", "answerable": False},
            ]
        )
    )
    capsys.readouterr()

    assert await run(["eval", str(labelled), "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == 4 and report["unanswerable"] == 2
    # The two unanswerable questions share no term with any document: no hit, flagged;
    # the answerable ones restate a document's words and cite it: not flagged.
    assert [r["flagged"] for r in report["results"]] == [False, False, True, True]
    assert report["flag_precision"] == 1.0
    assert report["flag_recall"] == 1.0
    assert report["flag_f1"] == 1.0
    assert report["auroc"] == 1.0
    assert report["best_f1"] == 1.0
    assert report["results"][2]["reasons"][0] == (
        "no source in the knowledge base covers this question"
    )
    assert len(fake_llm.requests) == 4  # each question through the real pipeline

    assert await run(["eval", str(labelled)]) == 0
    text = capsys.readouterr().out
    assert "precision 1.000  recall 1.000  F1 1.000" in text
    assert "AUROC of the confidence: 1.000" in text


async def test_eval_rejects_a_bad_line_in_one_sentence(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labelled = tmp_path / "bad.jsonl"
    labelled.write_text('{"question": "Hi?"}\n')

    assert await run(["eval", str(labelled)]) == 1

    err = capsys.readouterr().err
    assert "line 1 needs" in err and "Traceback" not in err


def test_metrics_worked_out_by_hand() -> None:
    rows = [
        EvalRow("a", True, 0.9, False),
        EvalRow("b", True, 0.4, True),  # a false flag
        EvalRow("c", False, 0.3, True),
        EvalRow("d", False, 0.6, False),  # a missed one
    ]
    # flags: tp=1 (c), fp=1 (b), fn=1 (d)
    assert prf([r.flagged for r in rows], [not r.answerable for r in rows]) == (0.5, 0.5, 0.5)
    # answerable over unanswerable pairs: (0.9>0.3, 0.9>0.6, 0.4>0.3, 0.4<0.6) = 3/4
    assert auroc([r.confidence or 0 for r in rows], [r.answerable for r in rows]) == 0.75
    # below 0.35 flags c only: P 1, R 0.5, F1 0.667; below 0.75 flags b, c, d: F1 0.8
    assert best_threshold(rows) == (0.75, pytest.approx(0.8))
    assert summarize(rows)["flag_f1"] == 0.5


async def test_chat_once_json_shows_confidence_flagged_and_reasons(
    settings: Settings,
    fake_llm: FakeOpenAIServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await add_docs(tmp_path)  # knowledge that does not cover the question (none: no flag)
    capsys.readouterr()
    fake_llm.enqueue("Probably on the sticker under the router.")

    assert await run(["chat", "--once", "What is the wifi password?", "--json"]) == 0

    payload = json.loads(capsys.readouterr().out)
    assert payload["flagged"] is True
    assert payload["no_answer"] is False
    assert payload["reasons"] == ["no source in the knowledge base covers this question"]
    assert 0.0 <= payload["confidence"] < 0.05
