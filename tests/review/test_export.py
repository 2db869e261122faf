"""`candor export finetune`: valid OpenAI chat fine-tuning JSONL with approved answers only.

Answers are produced by the real manager (fake LLM), votes and corrections stored as the
Slack surface stores them; the CLI runs in a worker thread (it has its own event loop)
and asks the fake Slack which channels are private.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.cli.main import main
from bot.clock import FixedClock
from bot.db import repo
from bot.deps import Deps
from bot.review import items
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_server import FakeSlackServer
from tests.helpers import make_turn

OLD = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


async def answer(deps: Deps, fake_llm: FakeOpenAIServer, text: str, reply: str, **turn: Any) -> int:
    fake_llm.enqueue(reply)
    result = await deps.manager.reply(make_turn(text, **turn))
    assert result.answer_id is not None
    return result.answer_id


async def vote(deps: Deps, answer_id: int, user: str, value: str) -> None:
    async with deps.db.write() as session:
        assert await repo.record_feedback(
            session, answer_id=answer_id, user_id=user, vote=value, when=deps.clock.now()
        )


async def correct(deps: Deps, answer_id: int, text: str) -> None:
    async with deps.db.write() as session:
        item = await items.raise_review(
            session, answer_id=answer_id, kind=items.KIND_THUMBS_DOWN, now=deps.clock.now()
        )
        assert item is not None
        await items.correct(
            session, review_id=item.review_id, reviewer_id="UREV", text=text, now=deps.clock.now()
        )


@pytest.fixture
def slack_env(slack: FakeSlackServer, monkeypatch: pytest.MonkeyPatch) -> FakeSlackServer:
    """The CLI asks this fake Slack whether channels are private (`G…` are)."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    monkeypatch.setenv("SLACK_API_URL", slack.url)
    return slack


async def export(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    out = tmp_path / "train.jsonl"
    code = await asyncio.to_thread(main, ["export", "finetune", "--out", str(out), *args])
    assert code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def assert_finetune_shape(example: dict[str, Any]) -> None:
    """OpenAI's chat fine-tuning format: one `messages` list, system first, assistant last."""
    assert set(example) == {"messages"}
    messages = example["messages"]
    assert messages[0]["role"] == "system" and messages[-1]["role"] == "assistant"
    assert messages[-2]["role"] == "user"
    for message in messages:
        assert set(message) == {"role", "content"}
        assert message["role"] in ("system", "user", "assistant")
        assert isinstance(message["content"], str) and message["content"]


async def test_export_holds_approved_answers_and_corrections_only(
    deps: Deps,
    fake_llm: FakeOpenAIServer,
    clock: FixedClock,
    slack_env: FakeSlackServer,
    tmp_path: Path,
) -> None:
    clock.set(OLD)
    old = await answer(deps, fake_llm, "Old question?", "Old answer.", event_id="E0", thread_ts="0")
    await vote(deps, old, "U1", "up")
    clock.set(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    # A thread: the approved answer is the second turn, so the first is its history.
    await answer(
        deps, fake_llm, "Where are the docs?", "In the wiki.", event_id="E1", thread_ts="1"
    )
    liked = await answer(
        deps, fake_llm, "And the runbook?", "Runbooks live in ops/.", event_id="E2", thread_ts="1"
    )
    await vote(deps, liked, "U1", "up")
    disliked = await answer(deps, fake_llm, "Lunch?", "Never.", event_id="E3", thread_ts="3")
    await vote(deps, disliked, "U1", "down")
    contested = await answer(deps, fake_llm, "Tabs?", "Spaces.", event_id="E4", thread_ts="4")
    await vote(deps, contested, "U1", "up")
    await vote(deps, contested, "U2", "down")
    corrected = await answer(deps, fake_llm, "VPN host?", "vpn.old", event_id="E5", thread_ts="5")
    await vote(deps, corrected, "U1", "down")
    await correct(deps, corrected, "It is vpn.corp.example.")
    secret = await answer(
        deps,
        fake_llm,
        "Deal codename?",
        "BLUEHERON.",
        event_id="E6",
        thread_ts="6",
        channel_id="G1",
    )
    await vote(deps, secret, "U1", "up")
    elsewhere = await answer(
        deps, fake_llm, "Sales target?", "Ten.", event_id="E7", thread_ts="7", channel_id="C2"
    )
    await vote(deps, elsewhere, "U1", "up")

    examples = await export(tmp_path, "--since", "2026-11-01")
    for example in examples:
        assert_finetune_shape(example)
    finals = [e["messages"][-1]["content"] for e in examples]
    assert finals == ["Runbooks live in ops/.", "It is vpn.corp.example.", "Ten."]
    dump = json.dumps(examples)
    assert "Never." not in dump and "Spaces." not in dump and "vpn.old" not in dump
    assert "BLUEHERON" not in dump  # a private channel, not asked for
    assert "Old answer." not in dump  # before --since

    runbook = examples[0]["messages"]
    assert [m["role"] for m in runbook] == ["system", "user", "assistant", "user", "assistant"]
    assert runbook[1:3] == [
        {"role": "user", "content": "Where are the docs?"},
        {"role": "assistant", "content": "In the wiki."},
    ]
    assert runbook[0]["content"] == deps.settings.candor.default_system_message.format_map(
        _Values(channel="C1", user="U1", date="2026-11-26", model="gpt-4o-mini", workspace="T1")
    )

    only_c1 = await export(tmp_path, "--channel", "C1")
    assert [e["messages"][-1]["content"] for e in only_c1] == [
        "Old answer.",
        "Runbooks live in ops/.",
        "It is vpn.corp.example.",
    ]
    with_private = await export(tmp_path, "--since", "2026-11-01", "--include-private")
    assert "BLUEHERON." in [e["messages"][-1]["content"] for e in with_private]


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


async def test_without_a_slack_token_every_channel_counts_as_private(
    deps: Deps, fake_llm: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    liked = await answer(deps, fake_llm, "Docs?", "In the wiki.", event_id="E1", thread_ts="1")
    await vote(deps, liked, "U1", "up")

    assert await export(tmp_path) == []
    assert "--include-private" in capsys.readouterr().err
    assert len(await export(tmp_path, "--include-private")) == 1


async def test_a_bad_since_date_is_one_sentence(tmp_path: Path, deps: Deps) -> None:
    out = tmp_path / "x.jsonl"
    code = await asyncio.to_thread(
        main, ["export", "finetune", "--out", str(out), "--since", "last week"]
    )
    assert code != 0 and not out.exists()
