"""Admins teach Candor files by uploading them in a DM with the message `learn`."""

from __future__ import annotations

from bot.deps import Deps
from bot.kb import ScopedKnowledge
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import message
from tests.handlers.conftest import Candor

NOTES = b"# Runbook\n\nTo restart the ingest worker, run `systemctl restart ingest`.\n"


async def sources(deps: Deps) -> list[str]:
    assert isinstance(deps.knowledge, ScopedKnowledge)
    return [s.source for s in await deps.knowledge.kb.list_sources()]


async def test_admin_upload_with_learn_is_ingested(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    candor.slack.set_user("UADMIN1", is_admin=True)
    runbook = candor.slack.add_file("runbook.md", NOTES, "text/markdown")
    binary = candor.slack.add_file("tool.exe", b"MZ\x00", "application/octet-stream")
    await candor.send.event(
        message(
            "learn",
            channel="D1",
            user="UADMIN1",
            channel_type="im",
            files=[runbook, binary],
            subtype="file_share",
        )
    )
    await candor.idle()

    [reply] = candor.slack.messages("D1")
    assert reply.text.startswith("Added to the knowledge base, for the whole workspace:")
    assert "runbook.md: 1 chunks added" in reply.text
    assert "tool.exe: skipped" in reply.text
    assert fake_llm.requests == []  # learning is not a question
    assert await sources(deps) == ["upload:workspace/runbook.md"]

    await candor.send.event(
        message("how do I restart the ingest worker?", channel="D2", user="U5", channel_type="im")
    )
    await candor.idle()
    assert "systemctl restart ingest" in fake_llm.last["messages"][0]["content"]


async def test_non_admin_upload_is_refused_and_nothing_stored(candor: Candor, deps: Deps) -> None:
    runbook = candor.slack.add_file("runbook.md", NOTES, "text/markdown")
    await candor.send.event(
        message(
            "learn",
            channel="D1",
            user="U-member",
            channel_type="im",
            files=[runbook],
            subtype="file_share",
        )
    )
    await candor.idle()
    [reply] = candor.slack.messages("D1")
    assert reply.text.startswith("Only Candor admins can add files")
    assert await sources(deps) == []
