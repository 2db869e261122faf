"""List prices from `genai-prices`: models the old hand-written table lacked, service tiers,
prices that changed over time, overrides on top, and the ledger naming what billed a call."""

from __future__ import annotations

from datetime import UTC, datetime

import genai_prices

from bot.clock import FixedClock
from bot.conversation import ConversationManager
from bot.deps import Deps
from bot.spend.guard import SpendLedger
from tests.fakes.openai_server import FakeOpenAIServer
from tests.spend.helpers import ledger_rows, make_turn
from tests.spend.test_billing import set_channel_model

LIST_VERSION = f"genai-prices@{genai_prices.__version__}"


async def test_a_model_the_old_table_lacked_is_billed_at_its_list_price(
    manager: ConversationManager, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_channel_model(deps, "gpt-5.1")
    fake_llm.enqueue("New model.", prompt_tokens=1000, cached_tokens=400, completion_tokens=100)

    await manager.reply(make_turn(event_id="Ev-new-model"))

    [row] = await ledger_rows(deps.db)
    # gpt-5.1 list price: $1.25 input, $0.125 cached input, $10 output per 1M tokens.
    assert row.cost_micro_usd == 600 * 1.25 + 400 * 0.125 + 100 * 10
    assert row.price_version == LIST_VERSION


async def test_the_service_tier_the_response_names_is_billed_at_that_tier(
    manager: ConversationManager, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_channel_model(deps, "gpt-5.1")
    fake_llm.enqueue("Fast.", prompt_tokens=1000, completion_tokens=100, service_tier="priority")
    fake_llm.enqueue("Slow.", prompt_tokens=1000, completion_tokens=100, service_tier="flex")
    fake_llm.enqueue("Plain.", prompt_tokens=1000, completion_tokens=100, service_tier="default")

    for n in range(3):
        await manager.reply(make_turn(event_id=f"Ev-tier-{n}", thread_ts=f"1.{n}"))

    rows = await ledger_rows(deps.db)
    # priority doubles gpt-5.1's price, flex halves it.
    assert [r.cost_micro_usd for r in rows] == [
        1000 * 2.5 + 100 * 20,
        1000 * 0.625 + 100 * 5,
        1000 * 1.25 + 100 * 10,
    ]


async def test_an_admin_override_still_wins_over_the_list_price(
    manager: ConversationManager, ledger: SpendLedger, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_channel_model(deps, "gpt-5.1")
    await ledger.set_price("gpt-5.1", input_usd_per_m=1.0, output_usd_per_m=2.0, by="UADMIN")
    fake_llm.enqueue("Overridden.", prompt_tokens=1000, completion_tokens=100)

    await manager.reply(make_turn(event_id="Ev-override"))

    [row] = await ledger_rows(deps.db)
    assert row.cost_micro_usd == 1000 * 1 + 100 * 2
    assert row.price_version.startswith("override@")


async def test_the_list_price_in_force_at_the_calls_time_applies(
    ledger: SpendLedger, clock: FixedClock
) -> None:
    # DeepSeek changed this model's price on 2026-08-17 and again on 2026-09-10, and
    # charges double from 06:00 to 10:00 UTC; the clock stands at 09:00.
    model = "deepseek/deepseek-v4-flash"
    async with ledger.db.sessions() as session:
        before = await ledger.prices.price_for(session, model, at=datetime(2026, 8, 1, tzinfo=UTC))
        during = await ledger.prices.price_for(session, model, at=datetime(2026, 8, 20, tzinfo=UTC))
        after = await ledger.prices.price_for(
            session, model, at=datetime(2026, 9, 15, 12, tzinfo=UTC)
        )
        peak = await ledger.prices.price_for(session, model, at=clock.now())
    assert [p.output_micro_usd_per_m for p in (before, during, after, peak)] == [
        280_000,
        660_000,
        600_000,
        1_200_000,
    ]
    assert {p.source for p in (before, during, after, peak)} == {"genai-prices"}
    assert after.matched == "deepseek/deepseek-v4-flash"


async def test_every_listed_price_says_where_it_comes_from(ledger: SpendLedger) -> None:
    await ledger.set_price("acme-llm-7b", input_usd_per_m=0.5, output_usd_per_m=0.5)

    prices = {p.model: p for p in await ledger.list_prices()}

    assert prices["gpt-4o"].origin == f"list price, {LIST_VERSION} as openai/gpt-4o"
    assert prices["gemma3-270m"].origin.startswith("local table (candor-local@")
    assert prices["acme-llm-7b"].origin.startswith("admin override (override@")
