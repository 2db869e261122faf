"""The tokenizer (~45 MiB) is loaded only when an exact count decides something, and then
off the event loop; below that, a text's bytes stand in as an upper bound."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from bot.deps import Deps
from bot.tokens import BYTE_BOUND, TokenCounter
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import make_turn, seed_thread
from tests.spend.helpers import ledger_rows

TEXTS = [
    "How do I deploy the billing service to staging?",
    "naïve café — déjà vu, Straße, ÆØÅ",
    "日本語のテキストとひらがな、カタカナ。中文也可以。한국어도.",
    "emoji 🚀🔥👍🏽 and flags 🇫🇷🇯🇵",
    "def f(x: int) -> int:\n    return x ** 2  # := walrus\n\t\t  spaces   and tabs",
    "https://example.com/a/b?c=d&e=f#g " * 20,
    "a" * 5000,
    " " * 300 + "\n" * 50,
]


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
def test_the_byte_bound_never_counts_fewer_than_the_tokenizer(tmp_path: Path, model: str) -> None:
    exact = TokenCounter(tmp_path / "tiktoken")
    for text in TEXTS:
        assert BYTE_BOUND.count(text, model) >= exact.count(text, model) > 0
    messages = [{"role": "system", "content": t} for t in TEXTS]
    assert BYTE_BOUND.count_messages(messages, model) >= exact.count_messages(messages, model)


async def test_concurrent_first_uses_load_the_encoding_once_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    counter = TokenCounter(tmp_path / "tiktoken")
    opened: list[str] = []
    original = TokenCounter._open

    def recording(self: TokenCounter, name: str) -> Any:
        opened.append(threading.current_thread().name)
        return original(self, name)

    monkeypatch.setattr(TokenCounter, "_open", recording)
    assert counter.now("gpt-4o") is BYTE_BOUND
    await asyncio.gather(*(counter.ensure("gpt-4o") for _ in range(5)))
    assert len(opened) == 1
    assert opened[0] != threading.main_thread().name  # not on the event loop's thread
    assert counter.now("gpt-4o") is counter
    assert counter.count("Hello there", "gpt-4o") < BYTE_BOUND.count("Hello there", "gpt-4o")


async def test_a_short_question_is_answered_and_billed_without_loading_the_tokenizer(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("Run `make deploy`.", prompt_tokens=40, completion_tokens=6)

    answer = await deps.manager.reply(make_turn(event_id="Ev1"))

    assert answer.text == "Run `make deploy`."
    assert not deps.tokens.is_loaded("gpt-4o-mini")
    [row] = await ledger_rows(deps.db)
    # Billed on the server's usage, whatever was held.
    assert (row.status, row.prompt_tokens, row.completion_tokens) == ("settled", 40, 6)
    assert not row.estimated


@pytest.fixture
async def tiny_model(deps: Deps) -> str:
    """Channel C1 on a model with a 1,000-token window and 200 tokens for the answer."""
    from tests.test_conversation import set_channel

    deps.settings.candor.context_windows["tiny-model"] = 1000
    await set_channel(deps, model="tiny-model", max_answer_tokens=200)
    return "tiny-model"


async def test_a_thread_too_long_by_its_bytes_but_not_its_tokens_keeps_every_turn(
    deps: Deps, fake_llm: FakeOpenAIServer, tiny_model: str
) -> None:
    # ~1,300 bytes of history, but far fewer tokens: by its bytes it would not fit.
    texts = [f"turn {i}: " + "word " * 50 for i in range(6)]
    await seed_thread(deps, texts)
    assert sum(BYTE_BOUND.count(t, tiny_model) for t in texts) > 1000

    answer = await deps.manager.reply(make_turn("And now?"))

    sent = [m["content"] for m in fake_llm.last["messages"][1:-1]]
    assert sent == texts  # nothing trimmed
    assert answer.history_turns_dropped == 0
    assert deps.tokens.is_loaded(tiny_model)


async def test_a_thread_too_long_for_the_window_is_trimmed_by_exact_counts(
    deps: Deps, fake_llm: FakeOpenAIServer, tiny_model: str
) -> None:
    texts = [f"turn {i}: " + "word " * 100 for i in range(12)]
    await seed_thread(deps, texts)

    answer = await deps.manager.reply(make_turn("And now?"))

    sent = fake_llm.last["messages"]
    history = [m["content"] for m in sent[1:-1]]
    assert 0 < len(history) < 12 and history == texts[-len(history) :]
    assert deps.tokens.count_messages(sent, tiny_model) + 200 <= 1000
    # Exact counts keep as much as fits: one more turn would not have.
    more = [sent[0], {"role": "user", "content": texts[-len(history) - 1]}, *sent[1:]]
    assert deps.tokens.count_messages(more, tiny_model) + 200 > 1000 * 0.97
    assert answer.history_turns_dropped == 12 - len(history)
