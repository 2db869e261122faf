"""The tool loop through the real manager, the fake LLM (streaming and not) and the ledger."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from bot.clock import FixedClock
from bot.db import repo
from bot.deps import Deps
from bot.tools import builtins
from bot.tools.base import ToolContext, ToolOutput
from bot.tools.builtins import BuiltinEnv
from bot.tools.loop import LEFT_OUT, TOOL_RULE, fit_to_window
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import make_turn
from tests.spend.helpers import ledger_rows
from tests.tools.helpers import allow


def tool_messages(body: dict[str, object]) -> list[dict[str, object]]:
    return [m for m in body["messages"] if m["role"] == "tool"]  # type: ignore[attr-defined, index]


async def set_steps(deps: Deps, steps: int, **values: object) -> None:
    async with deps.db.sessions.begin() as session:
        row = await repo.get_or_create_channel_row(
            session, workspace_id="T1", channel_id="C1", now=deps.clock.now()
        )
        row.tool_max_steps = steps
        for key, value in values.items():
            setattr(row, key, value)


async def test_without_rules_no_tools_are_offered(deps: Deps, fake_llm: FakeOpenAIServer) -> None:
    fake_llm.enqueue("Plain answer.")

    answer = await deps.manager.reply(make_turn())

    assert "tools" not in fake_llm.last
    assert answer.text == "Plain answer."
    assert answer.tool_calls == []


@pytest.mark.parametrize("stream", [True, False])
async def test_two_step_loop_answers_from_the_tool_result(
    deps: Deps, fake_llm: FakeOpenAIServer, stream: bool
) -> None:
    await allow(deps, "builtin/current_time")
    fake_llm.enqueue_tool_calls(("current_time", {"timezone": "Europe/Berlin"}))
    fake_llm.enqueue("It is Thursday, 10:00 in Berlin.")
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    manager = deps.manager
    if not stream:
        from dataclasses import replace

        original = manager.llm.complete

        async def once(request, on_delta=None):  # type: ignore[no-untyped-def]
            return await original(replace(request, stream=False), on_delta)

        manager.llm.complete = once  # type: ignore[method-assign]
    answer = await manager.reply(make_turn("What time is it in Berlin?"), on_delta=on_delta)

    first, second = fake_llm.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["current_time"]
    assert TOOL_RULE in first["messages"][0]["content"]
    assert second["messages"][-2]["tool_calls"][0]["function"] == {
        "name": "current_time",
        "arguments": json.dumps({"timezone": "Europe/Berlin"}),
    }
    # The clock is the injected one: 2026-11-26 09:00 UTC is 10:00 in Berlin.
    assert (
        tool_messages(second)[0]["content"]
        == "Thursday 2026-11-26 10:00:00 (Europe/Berlin, UTC+0100)"
    )
    assert answer.text == "It is Thursday, 10:00 in Berlin."
    assert answer.tool_calls == [
        {
            "name": "current_time",
            "tool": "builtin/current_time",
            "arguments": {"timezone": "Europe/Berlin"},
            "ok": True,
            "approved": None,
        }
    ]
    if stream:
        assert "".join(deltas) == answer.text


async def test_step_bound_stops_a_model_that_calls_tools_forever(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await allow(deps)
    await set_steps(deps, 3)
    for _ in range(5):
        fake_llm.enqueue_tool_calls(("current_time", {}))

    answer = await deps.manager.reply(make_turn("Loop forever"))

    assert len(fake_llm.requests) == 3
    assert "tools" in fake_llm.requests[1]
    assert "tools" not in fake_llm.requests[2]  # the last step must answer
    sentence = (
        "I stopped using tools after 3 steps, this channel's limit, so this answer is based "
        "on what I found so far."
    )
    assert answer.text == sentence
    assert sentence in answer.notices
    assert len(answer.tool_calls) == 2


async def test_a_tool_error_reaches_the_model_as_a_result(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await allow(deps)
    fake_llm.enqueue_tool_calls(
        ("current_time", {"timezone": "Mars/Olympus"}),
        ("no_such_tool", {}),
        ("lookup_user", "{oops"),
    )
    fake_llm.enqueue("Sorry, I could not tell.")

    answer = await deps.manager.reply(make_turn("Time on Mars?"))

    results = [m["content"] for m in tool_messages(fake_llm.last)]
    assert results == [
        "error: `Mars/Olympus` is not an IANA time zone.",
        "error: There is no tool `no_such_tool` here.",
        "error: The arguments must be a JSON object.",
    ]
    assert answer.text == "Sorry, I could not tell."
    assert [c["ok"] for c in answer.tool_calls] == [False, False, False]


async def test_a_model_that_rejects_tools_answers_without_them(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await allow(deps)
    fake_llm.enqueue("unused", reject_tools=True)
    fake_llm.enqueue("Answered plainly.")

    answer = await deps.manager.reply(make_turn())

    assert "tools" in fake_llm.requests[0]
    assert "tools" not in fake_llm.requests[1]
    assert answer.text == "Answered plainly."
    assert (
        "The model in this channel cannot use tools, so I answered without them." in answer.notices
    )


async def test_every_step_is_billed_in_the_ledger(deps: Deps, fake_llm: FakeOpenAIServer) -> None:
    await allow(deps)
    fake_llm.enqueue_tool_calls(("current_time", {}), prompt_tokens=120, completion_tokens=7)
    fake_llm.enqueue_tool_calls(
        ("current_time", {"timezone": "UTC"}), prompt_tokens=150, completion_tokens=9
    )
    fake_llm.enqueue("Done.", prompt_tokens=180, completion_tokens=3)

    answer = await deps.manager.reply(make_turn(event_id="Ev1"))

    rows = await ledger_rows(deps.db)
    assert [(r.call_id, r.prompt_tokens, r.completion_tokens) for r in rows] == [
        ("Ev1", 120, 7),
        ("Ev1:tools:2", 150, 9),
        ("Ev1:tools:3", 180, 3),
    ]
    assert all(r.cost_micro_usd > 0 for r in rows)
    assert answer.usage.prompt_tokens == 450
    assert answer.usage.completion_tokens == 19


async def test_budget_refusing_a_later_step_stops_with_a_sentence(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    from bot.spend.guard import SpendLedger

    assert isinstance(deps.spend, SpendLedger)
    await allow(deps)
    await deps.spend.set_default_budget(0.01)
    # The first step is billed at almost the whole budget, so the next cannot be reserved.
    fake_llm.enqueue_tool_calls(("current_time", {}), prompt_tokens=65_000, completion_tokens=1)
    fake_llm.enqueue("never asked")

    answer = await deps.manager.reply(make_turn(event_id="Ev2"))

    assert len(fake_llm.requests) == 1
    assert answer.text.startswith("I stopped before finishing with tools: You have used $0.01")
    assert [r.call_id for r in await ledger_rows(deps.db)] == ["Ev2"]


async def test_deadline_stops_a_model_whose_tool_calls_use_up_the_time(
    deps: Deps, fake_llm: FakeOpenAIServer, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each call of the tool takes 200 s on the injected clock; the deadline is 300 s, so
    step 3 is sent without tools and the answer says the time limit stopped it."""
    assert deps.settings.candor.tool_deadline_seconds == 300
    await allow(deps)
    await set_steps(deps, 10)

    async def slow_time(ctx: ToolContext, arguments: Mapping[str, Any], env: BuiltinEnv) -> Any:
        clock.advance(seconds=200)
        return await builtins.current_time(ctx, arguments, env)

    monkeypatch.setitem(builtins.RUNNERS, "current_time", slow_time)
    for _ in range(10):
        fake_llm.enqueue_tool_calls(("current_time", {}))

    answer = await deps.manager.reply(make_turn("Keep checking the time"))

    assert len(fake_llm.requests) == 3
    assert "tools" in fake_llm.requests[1]  # 200 s used: still within the limit
    assert "tools" not in fake_llm.requests[2]  # 400 s: answer with what you have
    sentence = (
        "I stopped using tools after 300 seconds, the time limit, so this answer is based "
        "on what I found so far."
    )
    assert answer.text == sentence
    assert sentence in answer.notices
    assert len(answer.tool_calls) == 2


async def test_each_step_is_fitted_to_the_context_window_oldest_results_first(
    deps: Deps, fake_llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ~400-token tool results do not fit a 1,000-token window beside the prompt and a
    200-token answer: step 3 leaves the first out and keeps the system message, the
    question and the latest result whole."""
    deps.settings.candor.context_windows["tiny-model"] = 1000
    await set_steps(deps, 5, model="tiny-model", max_answer_tokens=200)
    await allow(deps, "builtin/current_time")
    calls = 0

    async def long_result(ctx: ToolContext, arguments: Mapping[str, Any], env: BuiltinEnv) -> Any:
        nonlocal calls
        calls += 1
        return ToolOutput(f"reading {calls}: " + "the deploy log says ok " * 80)

    monkeypatch.setitem(builtins.RUNNERS, "current_time", long_result)
    fake_llm.enqueue_tool_calls(("current_time", {}))
    fake_llm.enqueue_tool_calls(("current_time", {}))
    fake_llm.enqueue("Both readings say ok.")

    answer = await deps.manager.reply(make_turn("What do the deploy logs say?"))

    first, second, third = fake_llm.requests
    assert third["messages"][0] == first["messages"][0]  # the system message, whole
    assert third["messages"][1]["content"] == "What do the deploy logs say?"
    assert [m["content"] for m in tool_messages(second)] == [
        "reading 1: " + "the deploy log says ok " * 80
    ]
    assert [m["content"] for m in tool_messages(third)] == [
        LEFT_OUT,
        "reading 2: " + "the deploy log says ok " * 80,
    ]
    window = int(1000 * 0.97) - 200
    for request in fake_llm.requests:
        tools = deps.manager.tokens.count(json.dumps(request["tools"]), "tiny-model")
        assert (
            deps.manager.tokens.count_messages(request["messages"], "tiny-model") + tools <= window
        )
    assert answer.text == "Both readings say ok."


def test_a_latest_result_too_long_for_the_window_is_cut_not_dropped() -> None:
    def count(text: str) -> int:
        return len(text.split())

    call = {"id": "c1", "type": "function", "function": {"name": "t", "arguments": "{}"}}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Read it"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "word " * 500},
    ]

    fitted = fit_to_window(messages, 120, count)

    assert fitted[:3] == messages[:3]
    assert fitted[3]["tool_call_id"] == "c1"
    assert fitted[3]["content"].endswith(
        "[The rest of this result was cut to fit the model's context window.]"
    )
    assert fitted[3]["content"].startswith("word word")
    assert messages[3]["content"] == "word " * 500  # the loop's own history is untouched
