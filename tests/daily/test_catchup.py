"""`/candor catchup [#channel] [since]`: signed slash commands into the real Bolt path.

Only members of the channel; the user's budget (over budget: one sentence, no LLM call);
a long channel summarized in parts that each fit the model's window, each billed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.deps import Deps
from bot.digest import InvalidSince, parse_since
from handlers import daily
from tests.conftest import START
from tests.daily.helpers import permalink
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import slash_command
from tests.handlers.conftest import Candor
from tests.spend.helpers import ledger_rows


def _ts(minutes_ago: int) -> str:
    return f"{(START - timedelta(minutes=minutes_ago)).timestamp():.6f}"


def _history(candor: Candor, channel: str, count: int, *, words: int = 8) -> list[str]:
    """`count` messages in the last hours, newest first as Slack returns them."""
    stamps = [_ts(10 * (count - n)) for n in range(count)]
    body = " ".join(["lorem"] * words)
    messages = [
        {"type": "message", "user": "U2", "text": f"Update {n}: {body}", "ts": ts}
        for n, ts in enumerate(stamps, 1)
    ]
    messages.append({"type": "message", "subtype": "channel_join", "user": "U4", "ts": _ts(5)})
    candor.slack.set_history(channel, list(reversed(messages)))
    return stamps


async def _catchup(candor: Candor, text: str, *, user: str = "U1") -> str:
    url = candor.slack.response_url()
    await candor.send.command(slash_command("/candor", text, user_id=user, response_url=url))
    calls = await candor.slack.wait_for("response_url")
    return str(calls[-1].body["text"])


async def test_catchup_summarizes_the_channel_with_links(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    stamps = _history(candor, "C7", 3)
    candor.slack.set_members("C7", ["U1", "U2"])
    fake_llm.enqueue("- Three updates landed [1, 3]")

    text = await _catchup(candor, "catchup <#C7|eng> 2h")

    assert text.startswith("*Catch-up on <#C7> since 2026-11-26 07:00 UTC* (3 messages)")
    assert f"<{permalink('C7', stamps[0])}|1>" in text
    history = candor.slack.calls_to("conversations.history")[0]
    assert float(history.body["oldest"]) == (START - timedelta(hours=2)).timestamp()
    request = fake_llm.requests[-1]
    assert "since 2026-11-26 07:00 UTC" in request["messages"][0]["content"]
    assert "Update 2" in request["messages"][-2]["content"]
    rows = await ledger_rows(deps.db, user_id="U1", status="settled")
    assert [r.channel_id for r in rows] == ["C7"]


async def test_catchup_only_for_members(candor: Candor, fake_llm: FakeOpenAIServer) -> None:
    _history(candor, "C7", 3)
    candor.slack.set_members("C7", ["U2"])

    assert await _catchup(candor, "catchup <#C7|eng>") == daily.NOT_A_MEMBER_CATCHUP
    assert candor.slack.calls_to("conversations.history") == []
    assert fake_llm.requests == []


async def test_catchup_over_budget_is_one_sentence_and_no_llm_call(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    _history(candor, "C7", 3)
    candor.slack.set_members("C7", ["U1"])
    assert deps.spend is not None
    await deps.spend.set_default_budget(0.000001)  # type: ignore[attr-defined]

    text = await _catchup(candor, "catchup <#C7|eng> yesterday")

    assert text.startswith("You have used $0.00 of your $0.00 budget for this period")
    assert "\n" not in text
    assert fake_llm.requests == []


async def test_a_long_channel_is_summarized_in_parts_within_the_window(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    model = deps.settings.candor.default_model
    deps.settings.candor.context_windows = {model: 1600}
    deps.settings.candor.max_answer_tokens = 200
    _history(candor, "C7", 40, words=30)
    candor.slack.set_members("C7", ["U1"])
    fake_llm.default_text = "- Updates landed [2]"

    text = await _catchup(candor, "catchup <#C7|eng> 1d")

    calls = len(fake_llm.requests)
    assert calls >= 3  # at least two parts, then the merge
    for request in fake_llm.requests:
        counted = deps.tokens.count_messages(request["messages"], model)
        assert counted + 200 <= 1600
    merge = fake_llm.requests[-1]
    assert "Partial summary" in merge["messages"][-2]["content"]
    sent = "\n".join(m["content"] for r in fake_llm.requests[:-1] for m in r["messages"][1:])
    assert all(f"Update {n}:" in sent for n in range(1, 41))  # every message in some part
    assert "parts, then merged" in text
    rows = await ledger_rows(deps.db, user_id="U1", status="settled")
    assert len(rows) == calls


async def test_nothing_new_needs_no_model(candor: Candor, fake_llm: FakeOpenAIServer) -> None:
    candor.slack.set_history("C7", [])
    candor.slack.set_members("C7", ["U1"])
    text = await _catchup(candor, "catchup <#C7|eng>")
    assert text == "Nothing was posted in <#C7> since 2026-11-25 09:00 UTC."
    assert fake_llm.requests == []


def test_since_forms() -> None:
    now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert parse_since(None, now=now) == now - timedelta(hours=24)
    assert parse_since("2h", now=now) == now - timedelta(hours=2)
    assert parse_since("3d", now=now) == now - timedelta(days=3)
    assert parse_since("yesterday", now=now) == datetime(2026, 11, 25, tzinfo=UTC)
    assert parse_since("2026-11-20", now=now) == datetime(2026, 11, 20, tzinfo=UTC)
    assert parse_since("2026-11-20T10:30+01:00", now=now) == datetime(
        2026, 11, 20, 9, 30, tzinfo=UTC
    )
    assert parse_since("2020-01-01", now=now) == now - timedelta(days=31)
    for bad in ("soon", "2027-01-01", "5 parsecs"):
        with pytest.raises(InvalidSince):
            parse_since(bad, now=now)
