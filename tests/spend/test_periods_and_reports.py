"""Budget periods roll over with the clock; notices, alerts and reports say the right thing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.clock import FixedClock
from bot.conversation import ConversationManager
from bot.llm import Usage
from bot.ports import OverBudget
from bot.spend.budgets import period_window
from bot.spend.guard import SpendLedger
from bot.spend.report import format_usage_table
from tests.fakes.openai_server import FakeOpenAIServer
from tests.spend.conftest import AlertInbox
from tests.spend.helpers import hold, make_turn


async def spend(ledger: SpendLedger, user: str, micro_usd: int, event: str | None = None) -> None:
    """One call of `micro_usd` on a $1-per-1M-tokens model (worst case = actual)."""
    reservation = await hold(
        ledger, event, user=user, model="flat", prompt_tokens=micro_usd, max_output_tokens=0
    )
    await ledger.settle(reservation, model="flat", usage=Usage(prompt_tokens=micro_usd))


@pytest.fixture
async def flat_price(ledger: SpendLedger) -> None:
    await ledger.set_price("flat", input_usd_per_m=1.0, output_usd_per_m=1.0)


def test_periods_are_calendar_periods_in_the_configured_timezone() -> None:
    now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # a Thursday
    day = period_window(now, "daily", "America/Los_Angeles")
    assert day.start.isoformat() == "2026-11-26T00:00:00-08:00"
    assert day.end.isoformat() == "2026-11-27T00:00:00-08:00"
    week = period_window(now, "weekly", "UTC")
    assert (week.start.date().isoformat(), week.end.date().isoformat()) == (
        "2026-11-23",
        "2026-11-30",
    )
    month = period_window(datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "monthly", "Europe/Berlin")
    assert month.start.isoformat() == "2027-01-01T00:00:00+01:00"
    assert month.key == "monthly:2027-01-01"


@pytest.mark.usefixtures("flat_price")
async def test_a_daily_budget_resets_at_local_midnight(
    ledger: SpendLedger, clock: FixedClock
) -> None:
    await ledger.set_default_budget(1.0, "daily")
    await spend(ledger, "U1", 900_000)

    with pytest.raises(OverBudget) as refused:
        await spend(ledger, "U1", 200_000)
    assert refused.value.user_message == (
        "You have used $0.90 of your $1.00 budget for this period, which is not enough "
        "for this request; it resets at 2026-11-27 00:00 UTC."
    )

    clock.advance(days=1)
    await spend(ledger, "U1", 200_000)

    usage = await ledger.user_usage("U1")
    assert (usage.period, usage.spent_micro_usd, usage.calls) == ("daily", 200_000, 1)
    assert usage.summary() == (
        "You have used $0.20 of your $1.00 daily budget (20%, 1 call); "
        "it resets at 2026-11-28 00:00 UTC."
    )


@pytest.mark.usefixtures("flat_price")
async def test_the_threshold_notice_and_admin_alert_come_once_per_period(
    ledger: SpendLedger, clock: FixedClock, alerts: AlertInbox
) -> None:
    await ledger.set_user_budget("U1", 1.0)
    await spend(ledger, "U1", 500_000)
    assert alerts.texts == []

    await spend(ledger, "U1", 320_000)  # now at 82%
    assert alerts.texts == [
        "Budget alert: <@U1> has used 82% ($0.82) of their $1.00 monthly budget."
    ]

    first = await hold(ledger, None, user="U1", model="flat", prompt_tokens=10, max_output_tokens=0)
    second = await hold(
        ledger, None, user="U1", model="flat", prompt_tokens=10, max_output_tokens=0
    )
    assert first.notices == (
        "Heads-up: you have used 82% of your $1.00 monthly budget for this period.",
    )
    assert second.notices == ()
    assert len(alerts.texts) == 1

    clock.advance(days=10)  # December: a new period warns again
    await spend(ledger, "U1", 900_000)
    assert len(alerts.texts) == 2


async def test_the_notice_reaches_the_answer(
    manager: ConversationManager, ledger: SpendLedger, fake_llm: FakeOpenAIServer
) -> None:
    await ledger.set_price("gpt-4o-mini", input_usd_per_m=1.0, output_usd_per_m=1.0)
    await ledger.set_user_budget("U1", 0.01)
    fake_llm.enqueue("Big one.", prompt_tokens=8_500, completion_tokens=0)

    first = await manager.reply(make_turn(thread_ts="1.1"))
    second = await manager.reply(make_turn(thread_ts="1.2"))

    assert first.notices == []
    assert second.notices == [
        "Heads-up: you have used 85% of your $0.01 monthly budget for this period."
    ]


@pytest.mark.usefixtures("flat_price")
async def test_top_users_table_and_chart(ledger: SpendLedger, clock: FixedClock) -> None:
    await ledger.set_default_budget(0)
    await spend(ledger, "UBOB", 2_500_000)
    await spend(ledger, "UADA", 1_000_000)
    await spend(ledger, "UADA", 4_000_000)
    clock.advance(days=1)
    await spend(ledger, "UCY", 10_000)

    today = await ledger.top_users("day")
    month = await ledger.top_users("month", limit=2)

    assert [(u.user_id, u.spent_micro_usd) for u in today] == [("UCY", 10_000)]
    assert [(u.user_id, u.spent_micro_usd, u.calls) for u in month] == [
        ("UADA", 5_000_000, 2),
        ("UBOB", 2_500_000, 1),
    ]
    assert format_usage_table(month, title="Top users, November") == "\n".join(
        [
            "Top users, November",
            "#  user  spent  calls  prompt tok  output tok",
            "-  ----  -----  -----  ----------  ----------",
            "1  UADA  $5.00      2   5,000,000           0",
            "2  UBOB  $2.50      1   2,500,000           0",
        ]
    )
    assert "(no spend in this period)" in format_usage_table([])

    png = await ledger.spend_chart_png(days=7, top=3)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 1000


async def test_budget_admin_functions_report_where_the_limit_comes_from(
    ledger: SpendLedger,
) -> None:
    assert (await ledger.get_budget("U9")).source == "settings"
    await ledger.set_default_budget(2.0, "weekly", by="UADMIN")
    default = await ledger.get_budget("U9")
    assert (default.source, default.limit_usd, default.period) == ("default", 2.0, "weekly")
    await ledger.set_user_budget("U9", 7.5)
    assert (await ledger.get_budget("U9")).limit_micro_usd == 7_500_000
    await ledger.set_user_budget("U9", None)
    assert (await ledger.get_budget("U9")).source == "default"
    with pytest.raises(ValueError):
        await ledger.set_default_budget(1.0, "fortnightly")
