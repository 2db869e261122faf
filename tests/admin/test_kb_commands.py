"""`/candor kb ingest|sources|remove`: admins teach Candor a channel, in that channel's scope."""

from __future__ import annotations

from bot.conversation import Turn
from bot.deps import Deps
from tests.admin.conftest import MEMBER, AdminHarness
from tests.fakes.openai_server import FakeOpenAIServer

HISTORY = [
    {
        "type": "message",
        "user": "U7",
        "ts": "1700000100.000200",
        "text": "Reminder: the on-call rotation swaps every Tuesday at noon.",
    },
    {
        "type": "message",
        "user": "U8",
        "ts": "1700000000.000100",
        "text": "The staging database password rotates monthly; ask #infra for it.",
    },
]


async def test_ingest_a_private_channel_then_it_answers_only_there(
    harness: AdminHarness, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    harness.slack.set_history("G12345678", HISTORY)
    reply = await harness.command("kb ingest <#G12345678|oncall>")
    assert "Learned <#G12345678> (private)" in reply
    assert "chunks added" in reply

    sources = await harness.command("kb sources")
    assert "`slack:G12345678`" in sources and "`channel:G12345678`" in sources

    question = "When does the on-call rotation swap?"
    await deps.manager.reply(Turn("T1", "G12345678", "5.0", "U7", question, event_id="E1"))
    assert "every Tuesday at noon" in str(fake_llm.last["messages"])
    await deps.manager.reply(Turn("T1", "C99999999", "6.0", "U7", question, event_id="E2"))
    assert "every Tuesday at noon" not in str(fake_llm.last["messages"])

    audit = await harness.command("audit")
    assert "kb ingest" in audit

    removed = await harness.command("kb remove slack:G12345678")
    assert "Removed `slack:G12345678`" in removed
    assert "empty" in await harness.command("kb sources")


async def test_members_cannot_ingest_and_bad_sources_are_explained(harness: AdminHarness) -> None:
    harness.slack.set_history("C12345678", HISTORY)
    refused = await harness.command("kb ingest <#C12345678|general>", user=MEMBER)
    assert "admin" in refused.lower()
    assert "empty" in await harness.command("kb sources")
    assert "There is no source `nope`" in await harness.command("kb remove nope")
