"""`/candor tools`: admins allow and deny tools per channel (audited); members cannot."""

from __future__ import annotations

from sqlalchemy import select

from bot.db.admin_models import AuditRow
from bot.deps import Deps
from tests.admin.conftest import ADMIN, MEMBER, AdminHarness
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import make_turn


async def test_allow_deny_and_list_are_audited(
    harness: AdminHarness, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    reply = await harness.command("tools allow builtin/current_time <#C1|eng>")
    assert reply == "`builtin/current_time` is allowed in <#C1>."
    listing = await harness.command("tools <#C1|eng>")
    assert "✅ `builtin/current_time` — read-only" in listing
    assert "▫️ `builtin/search_knowledge`" in listing

    fake_llm.enqueue("ok")
    await deps.manager.reply(make_turn(channel_id="C1"))
    assert [t["function"]["name"] for t in fake_llm.last["tools"]] == ["current_time"]

    assert (await harness.command("tools deny builtin --workspace")).endswith(
        "denied in the workspace default."
    )
    # The channel's own rule for the tool still wins over the workspace's for the server.
    fake_llm.enqueue("ok")
    await deps.manager.reply(make_turn(channel_id="C1", thread_ts="2.0"))
    assert [t["function"]["name"] for t in fake_llm.last["tools"]] == ["current_time"]

    async with deps.db.sessions() as session:
        rows = (await session.execute(select(AuditRow).order_by(AuditRow.id))).scalars().all()
    assert [(r.actor_id, r.action, r.target) for r in rows] == [
        (ADMIN, "tools allow", "builtin/current_time@C1"),
        (ADMIN, "tools deny", "builtin/*@workspace"),
    ]


async def test_unknown_servers_and_members_are_refused(harness: AdminHarness) -> None:
    reply = await harness.command("tools allow wiki/search")
    assert reply.startswith("There is no MCP server `wiki`")
    assert (await harness.command("tools allow builtin", user=MEMBER)).startswith("Sorry, only")


async def test_steps_is_a_channel_setting(harness: AdminHarness) -> None:
    assert "tool-steps" in await harness.command("tools steps 3 <#C1|eng>")
    assert "must be a whole number from 1 to 20" in await harness.command("tools steps 50")
