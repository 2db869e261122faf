"""The optional judge: one short call to a cheap model, "yes" or "no".

`judge_request` builds the call: the sources (as data, between tags), the question and
the answer, and one question back — can these sources answer the question, and does the
answer follow from them? It asks for one token with its alternatives (`top_logprobs`),
so `p_yes` reads P(yes) = p(yes) / (p(yes) + p(no)) from the logprobs when the server
sends them, and falls back to the text ("yes..." 0.9, "no..." 0.1, anything else 0.5).
The caller (the conversation manager) reserves and settles its cost like any call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bot.llm import ChatRequest, ChatResult
from bot.ports import RetrievedHit

JUDGE_SYSTEM = (
    "You check answers against sources. Reply with one word: yes or no. Say yes only if "
    "the sources can answer the question and the answer follows from them."
)
#: Longest share of each source shown to the judge, in characters.
SOURCE_CHARS = 1500
TEXT_YES = 0.9
TEXT_NO = 0.1


def judge_request(
    model: str,
    question: str,
    answer: str,
    hits: Sequence[RetrievedHit],
    *,
    deadline_seconds: float | None = None,
) -> ChatRequest:
    """The judge call for one answer (not streamed; one token; logprobs asked)."""
    sources = "\n".join(
        f"<source>[{h.index}] {h.title}\n{h.text[:SOURCE_CHARS]}</source>" for h in hits
    )
    content = (
        f"<sources>\n{sources or '(none)'}\n</sources>\n\n"
        f"<question>{question}</question>\n\n<answer>{answer}</answer>\n\n"
        "Can these sources answer the question, and does the answer follow from them? "
        "Reply yes or no."
    )
    return ChatRequest(
        model=model,
        messages=[
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": content},
        ],
        temperature=0.0,
        max_tokens=1,
        logprobs=True,
        top_logprobs=5,
        stream=False,
        deadline_seconds=deadline_seconds,
    )


def p_yes(result: ChatResult) -> float:
    """P(yes) from the first token's alternatives, else from the text."""
    yes = no = 0.0
    for token, logprob in result.first_top_logprobs.items():
        word = token.strip().lower()
        if word.startswith("yes"):
            yes += math.exp(logprob)
        elif word.startswith("no"):
            no += math.exp(logprob)
    if yes + no > 0:
        return yes / (yes + no)
    text = result.text.strip().lower()
    if text.startswith("yes"):
        return TEXT_YES
    if text.startswith("no"):
        return TEXT_NO
    return 0.5
