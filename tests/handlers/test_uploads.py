"""Admins teach Candor files by uploading them in a DM with the message `learn`."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from bot.admin import audit
from bot.clock import FixedClock
from bot.deps import Deps
from bot.kb import ScopedKnowledge
from handlers import uploads
from knowledge import Document, load_upload
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import message
from tests.handlers.conftest import Candor
from tests.knowledge.test_loaders import limit_pdf, make_pdf

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
    assert "systemctl restart ingest" in str(fake_llm.last["messages"])


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


async def learn(candor: Candor, *files: dict[str, Any], channel: str | None = None) -> str:
    """An admin uploads `files` in a DM with `learn [#channel]`; returns Candor's reply."""
    candor.slack.set_user("UADMIN1", is_admin=True)
    text = f"learn <#{channel}>" if channel else "learn"
    before = len(candor.slack.messages("D1"))
    await candor.send.event(
        message(
            text,
            channel="D1",
            user="UADMIN1",
            channel_type="im",
            files=list(files),
            subtype="file_share",
        )
    )
    await candor.idle()
    replies = candor.slack.messages("D1")[before:]
    assert len(replies) == 1
    return replies[0].text


async def stored_text(deps: Deps, source: str) -> str:
    """Every chunk of `source` as stored (in no particular order)."""
    assert isinstance(deps.knowledge, ScopedKnowledge)
    texts = [
        str(payload.get("text", ""))
        async for batch in deps.knowledge.kb.store.scroll_payloads()
        for _, payload in batch
        if payload.get("source") == source
    ]
    return "\n".join(texts)


async def test_large_file_is_learned_whole(candor: Candor, deps: Deps) -> None:
    body = "".join(f"Step {i}: check valve {i} and note its pressure.\n" for i in range(12_000))
    handbook = f"# Handbook\n\n{body}\nLast line: the spare key is in the red box.\n".encode()
    assert len(handbook) > 500 * 1024
    file = candor.slack.add_file("handbook.md", handbook, "text/markdown")

    reply = await learn(candor, file)

    assert "handbook.md:" in reply and "chunks added" in reply
    text = await stored_text(deps, "upload:workspace/handbook.md")
    assert "Step 11999: check valve 11999" in text
    assert "the spare key is in the red box" in text


async def test_bad_pdf_is_named_and_the_good_files_are_learned(candor: Candor, deps: Deps) -> None:
    broken = candor.slack.add_file("broken.pdf", limit_pdf(), "application/pdf")
    manual = candor.slack.add_file("manual.pdf", make_pdf(["Pump manual"]), "application/pdf")
    runbook = candor.slack.add_file("runbook.md", NOTES, "text/markdown")

    reply = await learn(candor, broken, manual, runbook)

    assert "• broken.pdf: skipped — The PDF is malformed or too large to read safely." in reply
    assert "• manual.pdf: 1 chunks added" in reply
    assert "• runbook.md: 1 chunks added" in reply
    assert sorted(await sources(deps)) == [
        "upload:workspace/manual.pdf",
        "upload:workspace/runbook.md",
    ]


async def test_pdf_is_parsed_off_the_event_loop(
    candor: Candor, deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []

    def spy(*args: Any, **kwargs: Any) -> Document:
        threads.append(threading.current_thread())
        return load_upload(*args, **kwargs)

    monkeypatch.setattr(uploads, "load_upload", spy)
    manual = candor.slack.add_file("manual.pdf", make_pdf(["Pump manual"]), "application/pdf")

    await learn(candor, manual)

    assert threads and threads[0] is not threading.main_thread()


async def test_binary_file_named_md_is_refused_in_one_sentence(candor: Candor, deps: Deps) -> None:
    tool = candor.slack.add_file(
        "tool.md", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 64, "text/markdown"
    )

    reply = await learn(candor, tool)

    assert reply == (
        "Nothing was added to the knowledge base:\n"
        "• tool.md: skipped — The file is not text (it looks like binary data)."
    )
    assert await sources(deps) == []


async def test_same_file_name_learned_for_two_channels_keeps_both(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    eng = candor.slack.add_file(
        "plan.md", b"# Plan\n\nShip the eng roadmap in May.\n", "text/markdown"
    )
    sales = candor.slack.add_file(
        "plan.md", b"# Plan\n\nClose the Acme deal by June.\n", "text/markdown"
    )

    await learn(candor, eng, channel="CENG")
    await learn(candor, sales, channel="GSALES")

    assert isinstance(deps.knowledge, ScopedKnowledge)
    scopes = {s.source: s.scope for s in await deps.knowledge.kb.list_sources()}
    assert scopes == {
        "upload:channel:CENG/plan.md": "channel:CENG",
        "upload:channel:GSALES/plan.md": "channel:GSALES",
    }
    assert "Acme deal" in await stored_text(deps, "upload:channel:GSALES/plan.md")


async def test_learn_writes_an_audit_row(candor: Candor, deps: Deps, clock: FixedClock) -> None:
    runbook = candor.slack.add_file("runbook.md", NOTES, "text/markdown")

    await learn(candor, runbook, channel="GSALES")

    async with deps.db.sessions() as session:
        [row] = await audit.latest(session)
    assert (row.actor_id, row.action, row.target) == ("UADMIN1", "kb learn", "channel:GSALES")
    assert row.after == {
        "file": "runbook.md",
        "source": "upload:channel:GSALES/runbook.md",
        "chunks": 1,
    }
    assert row.created_at.replace(tzinfo=None) == clock.now().replace(tzinfo=None)
