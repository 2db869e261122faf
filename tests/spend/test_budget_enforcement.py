"""Budgets hold under concurrency, retries are charged once, failures give money back."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest

from bot.clock import FixedClock
from bot.conversation import ConversationManager
from bot.deps import Deps
from bot.llm import LLMUnavailable, Usage
from bot.ports import OverBudget
from bot.spend.guard import DuplicateCall, SpendLedger
from tests.fakes.openai_server import FakeOpenAIServer
from tests.spend.helpers import hold, ledger_rows, make_turn

OVER_BUDGET = re.compile(
    r"You have used \$\d+\.\d\d of your \$(?P<limit>\d+\.\d\d) budget for this period, "
    r"which is not enough for this request; it resets at 2026-12-01 00:00 UTC\."
)


async def prompt_tokens_of(manager: ConversationManager, text: str) -> int:
    """The prompt size the manager will reserve for a fresh thread with `text`."""
    turn = make_turn(text)
    eff = await manager.channel_settings(turn.workspace_id, turn.channel_id)
    return manager.build_prompt(turn, eff, [], []).prompt_tokens


async def test_fifty_concurrent_requests_from_one_user_serve_only_what_the_budget_fits(
    manager: ConversationManager, ledger: SpendLedger, fake_llm: FakeOpenAIServer
) -> None:
    # A dear model, so one worst-case answer costs about a dollar.
    await ledger.set_price("gpt-4o-mini", input_usd_per_m=100.0, output_usd_per_m=1000.0)
    text = "Summarise the incident report."
    prompt = await prompt_tokens_of(manager, text)
    max_tokens = manager.settings.candor.max_answer_tokens
    per_call = -(-(prompt * 100_000_000 + max_tokens * 1_000_000_000) // 1_000_000)
    limit = per_call * 10 + per_call // 2  # fits 10 answers, not 11
    await ledger.set_user_budget("U1", limit / 1_000_000)
    fake_llm.delay = 0.05
    for _ in range(50):
        # The server bills exactly the worst case, so settled spend equals what was held.
        fake_llm.enqueue("Done.", prompt_tokens=prompt, completion_tokens=max_tokens)

    results = await asyncio.gather(
        *(
            manager.reply(make_turn(text, thread_ts=f"1700000000.{i:06d}", event_id=f"Ev{i}"))
            for i in range(50)
        ),
        return_exceptions=True,
    )

    served = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, OverBudget)]
    assert len(served) == 10
    assert len(refused) == 40
    assert len(fake_llm.requests) == 10
    for error in refused:
        match = OVER_BUDGET.fullmatch(error.user_message)
        assert match, error.user_message
        assert match["limit"] == f"{limit / 1_000_000:.2f}"
    charged = await ledger_rows(manager.db, status="settled")
    assert len(charged) == 10
    assert sum(r.cost_micro_usd for r in charged) == 10 * per_call <= limit
    usage = await ledger.user_usage("U1")
    assert usage.spent_micro_usd == 10 * per_call
    assert usage.held_micro_usd == 0
    assert usage.calls == 10


async def test_concurrent_reserves_on_separate_connections_never_overcommit(
    ledger: SpendLedger,
) -> None:
    await ledger.set_price("gpt-4o", input_usd_per_m=1000.0, output_usd_per_m=1000.0)
    await ledger.set_user_budget("U2", 10.0)  # each call holds $1.00

    async def one(i: int) -> bool:
        try:
            reservation = await hold(
                ledger,
                f"Ev{i}",
                user="U2",
                model="gpt-4o",
                prompt_tokens=500,
                max_output_tokens=500,
            )
        except OverBudget:
            return False
        await asyncio.sleep(0.01)
        await ledger.settle(
            reservation, model="gpt-4o", usage=Usage(prompt_tokens=500, completion_tokens=500)
        )
        return True

    outcomes = await asyncio.gather(*(one(i) for i in range(50)))

    assert outcomes.count(True) == 10
    usage = await ledger.user_usage("U2")
    assert usage.spent_micro_usd == 10_000_000
    assert usage.held_micro_usd == 0


async def test_a_retried_event_is_charged_once(
    manager: ConversationManager, ledger: SpendLedger, fake_llm: FakeOpenAIServer
) -> None:
    answer = await manager.reply(make_turn(event_id="Ev-retry"))

    with pytest.raises(DuplicateCall) as refused:
        await manager.reply(make_turn(event_id="Ev-retry"))

    assert refused.value.user_message == "Candor has already answered this message."
    assert len(fake_llm.requests) == 1
    rows = await ledger_rows(manager.db)
    assert [(r.call_id, r.kind, r.status) for r in rows] == [("Ev-retry", "chat", "settled")]
    usage = await ledger.user_usage("U1")
    assert usage.spent_micro_usd == rows[0].cost_micro_usd > 0
    assert rows[0].prompt_tokens == answer.usage.prompt_tokens


async def test_settling_one_reservation_twice_bills_it_once(ledger: SpendLedger) -> None:
    reservation = await hold(
        ledger, "Ev-twice", user="U1", model="gpt-4o-mini", prompt_tokens=100, max_output_tokens=100
    )
    usage = Usage(prompt_tokens=100, completion_tokens=50)

    await ledger.settle(reservation, model="gpt-4o-mini", usage=usage)
    await ledger.settle(reservation, model="gpt-4o-mini", usage=usage)

    rows = await ledger_rows(ledger.db)
    assert len(rows) == 1
    # 100 * $0.15/M + 50 * $0.60/M = 15 + 30 micro-USD
    assert rows[0].cost_micro_usd == 45
    assert (await ledger.user_usage("U1")).spent_micro_usd == 45


async def test_llm_failure_releases_the_hold_and_a_retry_is_billed_once(
    manager: ConversationManager, ledger: SpendLedger, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue_error(500, times=3)

    with pytest.raises(LLMUnavailable):
        await manager.reply(make_turn(event_id="Ev-fail"))

    usage = await ledger.user_usage("U1")
    assert (usage.spent_micro_usd, usage.held_micro_usd) == (0, 0)
    rows = await ledger_rows(manager.db)
    assert [(r.status, r.reason, r.cost_micro_usd) for r in rows] == [("released", "llm_error", 0)]

    # Slack retries the event: the released reservation is re-armed and billed once.
    await manager.reply(make_turn(event_id="Ev-fail"))

    rows = await ledger_rows(manager.db)
    assert [r.status for r in rows] == ["released", "settled"]
    usage = await ledger.user_usage("U1")
    assert usage.spent_micro_usd == rows[1].cost_micro_usd > 0
    assert usage.held_micro_usd == 0


async def test_over_budget_refuses_before_calling_the_llm(
    manager: ConversationManager, ledger: SpendLedger, fake_llm: FakeOpenAIServer
) -> None:
    await ledger.set_default_budget(0.000001, "monthly")

    with pytest.raises(OverBudget) as refused:
        await manager.reply(make_turn())

    assert refused.value.user_message == (
        "You have used $0.00 of your $0.00 budget for this period, which is not enough "
        "for this request; it resets at 2026-12-01 00:00 UTC."
    )
    assert fake_llm.requests == []
    assert await ledger_rows(manager.db) == []


async def test_unlimited_budget_still_records_spend(
    manager: ConversationManager, ledger: SpendLedger, deps: Deps
) -> None:
    await ledger.set_default_budget(0.000001)
    await ledger.set_user_budget("U1", 0)

    for i in range(3):
        await manager.reply(make_turn(thread_ts=f"17.{i}"))

    usage = await ledger.user_usage("U1")
    assert usage.limit_micro_usd is None
    assert usage.calls == 3
    assert usage.spent_micro_usd > 0
    assert "budget is unlimited" in usage.summary()


async def test_a_second_request_for_an_event_in_flight_is_refused_without_holding_more(
    ledger: SpendLedger,
) -> None:
    first = await hold(
        ledger, "Ev-busy", user="U1", model="gpt-4o-mini", prompt_tokens=100, max_output_tokens=100
    )

    with pytest.raises(DuplicateCall) as refused:
        await hold(
            ledger,
            "Ev-busy",
            user="U1",
            model="gpt-4o-mini",
            prompt_tokens=100,
            max_output_tokens=100,
        )

    assert refused.value.user_message == "Candor is already answering this message."
    assert (await ledger.user_usage("U1")).held_micro_usd == first.amount_micro_usd


async def test_holds_left_by_a_crash_are_released_by_the_sweep(
    ledger: SpendLedger, clock: FixedClock
) -> None:
    orphan = await hold(
        ledger,
        "Ev-crash",
        user="U1",
        model="gpt-4o-mini",
        prompt_tokens=100,
        max_output_tokens=1000,
    )
    assert await ledger.release_stale(older_than=timedelta(minutes=15)) == 0

    clock.advance(minutes=20)
    assert await ledger.release_stale(older_than=timedelta(minutes=15)) == 1

    assert (await ledger.user_usage("U1")).held_micro_usd == 0
    # The answer did arrive after all: it is still billed, exactly once.
    await ledger.settle(orphan, model="gpt-4o-mini", usage=Usage(prompt_tokens=100))
    await ledger.settle(orphan, model="gpt-4o-mini", usage=Usage(prompt_tokens=100))
    rows = await ledger_rows(ledger.db)
    assert [(r.status, r.reason, r.cost_micro_usd) for r in rows] == [
        ("released", "stale", 0),
        ("settled", None, 15),
    ]
    assert (await ledger.user_usage("U1")).spent_micro_usd == 15


async def test_a_failing_alert_callback_does_not_cost_the_user_their_answer(
    deps: Deps,
) -> None:
    async def broken(_text: str) -> None:
        raise RuntimeError("Slack is down")

    ledger = SpendLedger(deps.db, deps.settings, deps.clock, alert=broken)
    await ledger.set_user_budget("U1", 0.0001)  # 100 micro-USD
    reservation = await hold(
        ledger, None, user="U1", model="gpt-4o-mini", prompt_tokens=100, max_output_tokens=100
    )

    await ledger.settle(
        reservation, model="gpt-4o-mini", usage=Usage(prompt_tokens=100, completion_tokens=100)
    )

    assert (await ledger.user_usage("U1")).spent_micro_usd == 75


async def test_a_user_whose_budget_fits_the_exact_prompt_but_not_its_byte_bound_is_answered(
    manager: ConversationManager, ledger: SpendLedger, fake_llm: FakeOpenAIServer
) -> None:
    # The manager first holds an upper bound of the prompt (its bytes, no tokenizer
    # loaded); when the budget refuses that, it counts exactly and asks again.
    await ledger.set_price("gpt-4o-mini", input_usd_per_m=1000.0, output_usd_per_m=1000.0)
    text = "Summarise the incident report of last night's outage in three bullet points."
    max_tokens = manager.settings.candor.max_answer_tokens
    exact = await prompt_tokens_of(manager, text)  # (this loads the tokenizer: unload it)
    manager.tokens._encoders.clear()
    per_call = (exact + max_tokens) * 1000
    await ledger.set_user_budget("U1", (per_call + 500) / 1_000_000)
    fake_llm.enqueue("Done.", prompt_tokens=exact, completion_tokens=3)

    answer = await manager.reply(make_turn(text, event_id="Ev-tight"))

    assert answer.text == "Done."
    [row] = await ledger_rows(manager.db, status="settled")
    assert row.cost_micro_usd == (exact + 3) * 1000
    usage = await ledger.user_usage("U1")
    assert usage.held_micro_usd == 0
