"""`candor kb eval` end to end over a tiny labelled set whose numbers are worked out by hand,
and the metric definitions on their own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.settings import Settings
from knowledge.evaluation import EvalFileError, auroc, load_questions

DOCS = {
    "alpha.md": "# Alpha\n\nZebra stripes are black and white.\n",
    "beta.md": "# Beta\n\nThe quokka habitat is dry scrub land on islands.\n",
    "gamma.md": "# Gamma\n\nA narwhal tusk is a long tooth.\n",
    "delta.md": "# Delta\n\nAxolotl axolotl axolotl gills.\n",
}
QUESTIONS = [
    # only alpha matches: rank 1 -> recall 1, reciprocal rank 1
    {"question": "zebra stripes", "relevant": ["alpha"]},
    # mislabelled on purpose: only gamma matches -> recall 0, reciprocal rank 0 (a miss)
    {"question": "narwhal tusk", "relevant": ["beta"]},
    # one of three relevant names found, at rank 1 -> recall 1/3, reciprocal rank 1
    {"question": "axolotl gills", "relevant": ["delta", "alpha", "Beta"]},
    # delta (tf 3, short) outranks beta (tf 1, longer): beta at rank 2 -> recall 1, RR 1/2
    {"question": "quokka axolotl", "relevant": ["beta"]},
    # unanswerable, and no chunk shares a term: no hits, the lowest top score
    {"question": "platypus venom", "relevant": []},
    {"question": "okapi", "relevant": []},
]
RECALL = (1 + 0 + 1 / 3 + 1) / 4
MRR = (1 + 0 + 1 + 1 / 2) / 4
AUROC = 1.0  # every answerable question has a hit, every unanswerable one has none


async def run(argv: Sequence[str]) -> int:
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture
def labelled(tmp_path: Path) -> tuple[Path, Path]:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")
    return docs, questions


async def test_kb_eval_prints_recall_mrr_auroc_and_misses(
    settings: Settings, capsys: pytest.CaptureFixture[str], labelled: tuple[Path, Path]
) -> None:
    docs, questions = labelled
    assert await run(["kb", "add", str(docs)]) == 0
    capsys.readouterr()
    assert await run(["kb", "eval", str(questions)]) == 0
    out = capsys.readouterr().out
    assert "6 questions (4 answerable, 2 unanswerable)" in out
    assert f"recall@5: {RECALL:.3f}" in out
    assert f"MRR@10:    {MRR:.3f}" in out
    assert f"unanswerable questions: {AUROC:.3f}" in out
    missed = out.split("Missed in the top 5 (1):")[1]
    assert "narwhal tusk" in missed and "wanted beta; got Gamma" in missed
    assert "zebra" not in missed


async def test_kb_eval_json_holds_every_number_and_the_hits(
    settings: Settings, capsys: pytest.CaptureFixture[str], labelled: tuple[Path, Path]
) -> None:
    docs, questions = labelled
    assert await run(["kb", "add", str(docs)]) == 0
    capsys.readouterr()
    assert await run(["kb", "eval", str(questions), "--k", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["k"] == 1
    assert report["recall_at_k"] == pytest.approx((1 + 0 + 1 / 3 + 0) / 4)  # rank 2 is out
    assert report["mrr_at_10"] == pytest.approx(MRR)
    assert report["auroc_unanswerable"] == AUROC
    rows = {q["question"]: q for q in report["questions"]}
    assert [h["title"] for h in rows["quokka axolotl"]["hits"]] == ["Delta", "Beta"]
    assert rows["quokka axolotl"]["relevant"] == ["beta"]
    assert rows["okapi"]["hits"] == []
    top = rows["zebra stripes"]["hits"][0]
    assert top["source"].endswith("alpha.md") and top["score"] > 0


async def test_kb_eval_textbook_baseline_runs_over_the_same_chunks(
    settings: Settings, capsys: pytest.CaptureFixture[str], labelled: tuple[Path, Path]
) -> None:
    docs, questions = labelled
    assert await run(["kb", "add", str(docs)]) == 0
    capsys.readouterr()
    args = ["kb", "eval", str(questions), "--embedder", "textbook-bm25", "--json"]
    assert await run(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mrr_at_10"] == pytest.approx(MRR)


async def test_kb_eval_bad_file_is_one_sentence(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok", "relevant": []}\n{"question": "x", "relevant": "beta"}\n')
    assert await run(["kb", "eval", str(bad)]) == 1
    err = capsys.readouterr().err
    assert 'bad.jsonl:2 needs "relevant": a list of source names.' in err
    assert "Traceback" not in err


def test_auroc_counts_ties_as_half() -> None:
    # pairs (3,1) (3,0) (1,1) (1,0): 1 + 1 + 0.5 + 1 out of 4
    assert auroc([3.0, 1.0], [1.0, 0.0]) == 0.875
    assert auroc([1.0], []) is None


def test_shipped_labelled_set_answers_are_in_the_labelled_documents() -> None:
    """Each answerable question names a phrase that its relevant document really holds."""
    here = Path(__file__).parent / "eval"
    questions = load_questions(here / "questions.jsonl")
    assert len(questions) >= 50 and sum(not q.relevant for q in questions) >= 10
    for line in (here / "questions.jsonl").read_text().splitlines():
        row = json.loads(line)
        for name in row["relevant"]:
            assert row["evidence"].lower() in (here / "stdlib" / f"{name}.md").read_text().lower()
    with pytest.raises(EvalFileError):
        load_questions(here / "missing.jsonl")
