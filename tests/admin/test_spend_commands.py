"""`/candor budget|prices|usage` through Bolt, on the spend engine's own functions."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.db.admin_models import AuditRow
from bot.deps import Deps
from bot.llm import Usage
from bot.spend.budgets import get_budget
from bot.spend.guard import SpendLedger
from tests.admin.conftest import ADMIN, MEMBER, TEAM, AdminHarness


async def spend(deps: Deps, user: str, prompt: int, completion: int, event: str) -> None:
    """Bill one call to `user` through the real ledger."""
    ledger = SpendLedger(deps.db, deps.settings, deps.clock)
    reservation = await ledger.reserve(
        workspace_id=TEAM,
        channel_id="C1",
        user_id=user,
        model="gpt-4o",
        prompt_tokens=prompt,
        max_output_tokens=completion,
        event_id=event,
    )
    await ledger.settle(
        reservation, model="gpt-4o", usage=Usage(prompt_tokens=prompt, completion_tokens=completion)
    )


async def last_audit(deps: Deps) -> AuditRow:
    async with deps.db.sessions() as session:
        row = (
            (await session.execute(select(AuditRow).order_by(AuditRow.id.desc()))).scalars().first()
        )
    assert row is not None
    return row


async def test_default_and_user_budgets_are_set_and_audited(
    harness: AdminHarness, deps: Deps
) -> None:
    reply = await harness.command("budget default 10 weekly")
    assert "$10.00 per weekly period (workspace default)" in reply
    row = await last_audit(deps)
    assert (row.action, row.target, row.actor_id) == ("budget default", "default", ADMIN)
    assert row.before == {"usd": 5.0, "period": "monthly", "source": "settings"}
    assert row.after == {"usd": 10.0, "period": "weekly", "source": "default"}

    assert "$25.00" in await harness.command(f"budget <@{MEMBER}|m> 25")
    async with deps.db.sessions() as session:
        budget = await get_budget(session, user_id=MEMBER, settings=deps.settings.budget)
    assert budget.limit_usd == 25.0 and budget.source == "user"
    assert "own override" in await harness.command(f"budget show {MEMBER}")

    await harness.command(f"budget {MEMBER} none")
    async with deps.db.sessions() as session:
        budget = await get_budget(session, user_id=MEMBER, settings=deps.settings.budget)
    assert budget.limit_usd == 10.0 and budget.source == "default"


async def test_bad_budgets_and_prices_are_refused(harness: AdminHarness, deps: Deps) -> None:
    assert "from 0 to 100,000" in await harness.command("budget default -3")
    assert "use `daily`, `weekly` or `monthly`" in await harness.command("budget default 3 yearly")
    assert "USD per 1M tokens" in await harness.command("prices set gpt-4o 1 x 2")
    assert "Usage" in await harness.command("prices set gpt-4o 1 2")
    assert "Sorry" in await harness.command("budget default 100", user=MEMBER)
    async with deps.db.sessions() as session:
        assert (await session.execute(select(AuditRow))).first() is None


async def test_prices_set_and_show(harness: AdminHarness, deps: Deps) -> None:
    reply = await harness.command("prices set my-local-model 0.5 0.25 1.5")
    assert "`my-local-model` now costs $0.5 input, $0.25 cached input and $1.5 output" in reply
    shown = await harness.command("prices show")
    assert "• `my-local-model`: $0.5 / $0.25 / $1.5  _(admin override)_" in shown
    row = await last_audit(deps)
    assert row.action == "prices set" and row.after["input"] == 0.5
    assert row.before["source"] == "default"


async def test_usage_own_for_anyone_others_for_admins(harness: AdminHarness, deps: Deps) -> None:
    await spend(deps, MEMBER, 100_000, 10_000, "Ev1")
    own = await harness.command("usage", user=MEMBER)
    assert own.startswith("You have used $0.35 of your $5.00 monthly budget")
    assert "Sorry" in await harness.command(f"usage <@{ADMIN}>", user=MEMBER)
    assert "Sorry" in await harness.command("usage top", user=MEMBER)
    theirs = await harness.command(f"usage <@{MEMBER}>")
    assert theirs.startswith(f"<@{MEMBER}> has used $0.35")


async def test_usage_top_lists_spenders_and_dms_the_chart(
    harness: AdminHarness, deps: Deps
) -> None:
    await spend(deps, MEMBER, 100_000, 10_000, "Ev1")
    await spend(deps, ADMIN, 10_000, 1_000, "Ev2")
    reply = await harness.command("usage top week")
    assert "*Top users this week* (total $0.39)" in reply
    assert reply.index(MEMBER) < reply.index(ADMIN)
    assert "I sent you the daily spend chart in a direct message." in reply
    complete = harness.slack.calls_to("files.completeUploadExternal")[-1]
    assert complete.get("channel_id") == "D" + ADMIN
    files = complete.get("files")
    assert json.loads(files)[0]["title"] == "Candor spend, last 30 days"
    assert "not a budget period" in await harness.command("usage top year")


async def test_usage_top_explains_when_the_chart_cannot_be_sent(harness: AdminHarness) -> None:
    harness.slack.fail_next("conversations.open", "missing_scope")
    reply = await harness.command("usage top")
    assert "Nobody has spent anything this month yet." in reply
    assert "I could not send you the spend chart" in reply


async def test_home_shows_the_users_own_spend(harness: AdminHarness, deps: Deps) -> None:
    await spend(deps, MEMBER, 100_000, 10_000, "Ev1")
    view = await harness.open_home(MEMBER)
    texts = [b.get("text", {}).get("text", "") for b in view["blocks"]]
    assert any("You have used $0.35 of your $5.00 monthly budget" in t for t in texts)
