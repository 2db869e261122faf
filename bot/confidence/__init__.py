"""How sure Candor is of an answer: signals, one confidence in 0..1, reasons, a judge.

What lives here:

- `bot.confidence.signals` — the raw signals of one answer, each optional: retrieval
  support (best score, hits over the floor, IDF-weighted coverage of the question's terms,
  dense cosine), grounding (citations, cited numbers that exist, share of cited sentences,
  overlap of each cited sentence with its source), the model (token logprobs) and
  abstention ("the sources do not cover this").
- `bot.confidence.score` — the fitted combination: one confidence, the reasons a person
  reads, whether to flag, and whether the answer is an honest "no answer found".
- `bot.confidence.judge` — the optional second call ("can these sources answer this, and
  does the answer follow from them?"), read from its logprobs when the server sends them.

It may import `bot.llm`, `bot.ports` and `knowledge` (for the tokenizer and the citation
parser); nothing here touches the database, Slack or the spend ledger: the conversation
manager bills the judge call like any other.
"""

from __future__ import annotations

from bot.confidence.score import (
    DEFAULT_FLAG_THRESHOLD,
    NO_SOURCE_REASON,
    Assessment,
    assess,
    no_source_assessment,
)
from bot.confidence.signals import compute_signals

__all__ = [
    "DEFAULT_FLAG_THRESHOLD",
    "NO_SOURCE_REASON",
    "Assessment",
    "assess",
    "compute_signals",
    "no_source_assessment",
]
