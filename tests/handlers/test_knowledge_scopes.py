"""Through Slack: private-channel knowledge reaches a DM only for the channel's members,
asked of Slack at question time; and cited sources appear under the answer."""

from __future__ import annotations

import json

from bot.deps import Deps
from bot.kb import ScopedKnowledge
from knowledge import Document, Scope
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import message
from tests.handlers.conftest import Candor

SECRET = "The acquisition codename is BLUEHERON."


async def add_private_knowledge(deps: Deps) -> None:
    assert isinstance(deps.knowledge, ScopedKnowledge)
    await deps.knowledge.kb.add_document(
        Document(
            source="slack:G1",
            title="#deal-room",
            link="https://fake.slack.com/archives/G1",
            scope=Scope.channel("G1", private=True),
            text=SECRET,
        )
    )


async def test_dm_reads_private_knowledge_only_for_members(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_private_knowledge(deps)
    candor.slack.set_user_channels("U-member", ["G1"])
    candor.slack.set_user_channels("U-outsider", ["C1"])

    await candor.send.event(
        message("acquisition codename?", channel="D1", user="U-outsider", channel_type="im")
    )
    await candor.idle()
    assert "BLUEHERON" not in fake_llm.last["messages"][0]["content"]

    fake_llm.enqueue("It is BLUEHERON [1].")
    await candor.send.event(
        message("acquisition codename?", channel="D2", user="U-member", channel_type="im")
    )
    await candor.idle()
    assert "BLUEHERON" in fake_llm.last["messages"][0]["content"]
    shown = " ".join(m.text for m in candor.slack.messages("D2")) + " ".join(
        json.dumps(m.blocks) for m in candor.slack.messages("D2")
    )
    assert "https://fake.slack.com/archives/G1" in shown
