"""`/candor strict|judge|flag-threshold` through the real Bolt path: audited, and they
change what the next answer does."""

from __future__ import annotations

from sqlalchemy import select

from bot.conversation import Turn
from bot.db.admin_models import AuditRow
from bot.deps import Deps
from tests.admin.conftest import MEMBER, TEAM, AdminHarness
from tests.fakes.openai_server import FakeOpenAIServer


async def audit_rows(deps: Deps) -> list[AuditRow]:
    async with deps.db.sessions() as session:
        return list((await session.execute(select(AuditRow).order_by(AuditRow.id))).scalars())


def turn(channel: str = "C1", ts: str = "1.1") -> Turn:
    return Turn(workspace_id=TEAM, channel_id=channel, thread_ts=ts, user_id="U9", text="hi")


async def test_strict_on_stops_unsourced_answers_in_that_channel_only(
    harness: AdminHarness, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    reply = await harness.command("strict on")
    assert "<#C1>" in reply

    answer = await deps.manager.reply(turn())
    assert answer.no_answer is True and fake_llm.requests == []
    fake_llm.enqueue("ok")
    other = await deps.manager.reply(turn("C2"))
    assert other.no_answer is False and len(fake_llm.requests) == 1

    await harness.command("strict off")
    fake_llm.enqueue("ok")
    assert (await deps.manager.reply(turn(ts="2.2"))).no_answer is False
    rows = await audit_rows(deps)
    assert [(r.action, r.after) for r in rows] == [
        ("strict", {"strict": True}),
        ("strict", {"strict": False}),
    ]


async def test_judge_and_flag_threshold_are_set_checked_and_audited(
    harness: AdminHarness, deps: Deps
) -> None:
    await harness.command("judge gpt-4o-mini --workspace")
    await harness.command("flag-threshold 0.3")
    eff = await deps.manager.channel_settings(TEAM, "C1")
    assert eff.judge_model == "gpt-4o-mini" and eff.flag_threshold == 0.3

    await harness.command("judge off")  # this channel only: overrides the default
    assert (await deps.manager.channel_settings(TEAM, "C1")).judge_model is None
    assert (await deps.manager.channel_settings(TEAM, "C2")).judge_model == "gpt-4o-mini"

    assert "from 0 to 1" in await harness.command("flag-threshold 1.5")
    assert "`on` or `off`" in await harness.command("strict maybe")
    assert [r.action for r in await audit_rows(deps)] == ["judge", "flag-threshold", "judge"]
    refused = await harness.command("strict on", user=MEMBER)
    assert "admin" in refused.lower()
