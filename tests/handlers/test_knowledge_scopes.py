"""Through Slack: private-channel knowledge reaches a DM only for the channel's members,
asked of Slack at question time; and cited sources appear under the answer.

Scopes granted with `/candor kb scopes` (a real signed slash command) reach another
channel only within the rules of `bot.kb`: another private channel's knowledge only in a
private channel whose members are all inside it, never in a public one; a channel shared
with another organization and an asker outside the workspace (a guest, a user of another
team) never get the workspace's knowledge unless it was granted to that very channel.
"""

from __future__ import annotations

import json

from bot.deps import Deps
from bot.kb import ScopedKnowledge
from knowledge import Document, Scope
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention, message, slash_command
from tests.handlers.conftest import Candor

SECRET = "The acquisition codename is BLUEHERON."
HANDBOOK = "The deploy freeze starts every Friday at 15:00 and ends Monday at 09:00."
ADMIN = "UADMIN0001"


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
    assert "BLUEHERON" not in str(fake_llm.last["messages"])

    fake_llm.enqueue("It is BLUEHERON [1].")
    await candor.send.event(
        message("acquisition codename?", channel="D2", user="U-member", channel_type="im")
    )
    await candor.idle()
    assert "BLUEHERON" in str(fake_llm.last["messages"])
    shown = " ".join(m.text for m in candor.slack.messages("D2")) + " ".join(
        json.dumps(m.blocks) for m in candor.slack.messages("D2")
    )
    assert "https://fake.slack.com/archives/G1" in shown


async def add_workspace_knowledge(deps: Deps) -> None:
    assert isinstance(deps.knowledge, ScopedKnowledge)
    await deps.knowledge.kb.add_document(
        Document(
            source="file:handbook.md",
            title="Handbook",
            link="handbook.md",
            scope=Scope.workspace(),
            text=HANDBOOK,
        )
    )


async def grant(candor: Candor, channel: str, scopes: str) -> str:
    """`/candor kb scopes SCOPES`, run by an admin in `channel`; the reply they saw."""
    candor.slack.set_user(ADMIN, is_admin=True)
    before = len(candor.slack.calls_to("response_url"))
    form = slash_command(
        "/candor",
        f"kb scopes {scopes}",
        user_id=ADMIN,
        channel_id=channel,
        response_url=candor.slack.response_url(),
    )
    status, _ = await candor.send.command(form)
    assert status == 200
    calls = await candor.slack.wait_for("response_url", count=before + 1)
    return str(calls[before].get("text"))


async def ask(
    candor: Candor, fake_llm: FakeOpenAIServer, text: str, channel: str, user: str = "U1"
) -> str:
    """Ask in `channel` (a DM when it starts with D); everything the model was sent."""
    before = len(fake_llm.requests)
    if channel.startswith("D"):
        event = message(text, channel=channel, user=user, channel_type="im")
    else:
        event = app_mention(f"<@UBOT> {text}", channel=channel, user=user)
    await candor.send.event(event)
    await candor.idle()
    assert len(fake_llm.requests) == before + 1
    return "\n".join(str(m["content"]) for m in fake_llm.last["messages"])


async def test_private_knowledge_never_reaches_a_public_channel_whoever_is_in_it(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_private_knowledge(deps)
    # Everyone in #general today is also in the deal room; anyone may join #general later.
    candor.slack.set_members("CGENERAL1", ["U1"])
    candor.slack.set_members("G1", ["U1", "U2"])
    await grant(candor, "CGENERAL1", "channel:G1")

    assert "BLUEHERON" not in await ask(candor, fake_llm, "acquisition codename?", "CGENERAL1")


async def test_a_private_channel_inside_the_granted_one_reads_it(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_private_knowledge(deps)
    candor.slack.set_members("G2", ["U1"])
    candor.slack.set_members("G1", ["U1", "U2"])
    await grant(candor, "G2", "channel:G1")

    assert "BLUEHERON" in await ask(candor, fake_llm, "acquisition codename?", "G2")

    candor.slack.set_members("G3", ["U1", "U9"])  # U9 is not in the deal room
    await grant(candor, "G3", "channel:G1")
    assert "BLUEHERON" not in await ask(candor, fake_llm, "acquisition codename?", "G3")


async def test_an_externally_shared_channel_gets_only_what_was_granted_to_it(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_workspace_knowledge(deps)
    candor.slack.set_channel("CPARTNER1", is_shared=True, is_ext_shared=True)
    candor.slack.set_channel("CORGWIDE1", is_shared=True, is_org_shared=True)

    assert HANDBOOK in await ask(candor, fake_llm, "deploy freeze?", "CGENERAL1")
    assert HANDBOOK in await ask(candor, fake_llm, "deploy freeze?", "CORGWIDE1")
    assert HANDBOOK not in await ask(candor, fake_llm, "deploy freeze?", "CPARTNER1")

    # A workspace default does not count as a grant to the shared channel ...
    await grant(candor, "CGENERAL1", "workspace --workspace")
    assert HANDBOOK not in await ask(candor, fake_llm, "deploy freeze?", "CPARTNER1")
    # ... an admin granting it to that very channel does.
    await grant(candor, "CPARTNER1", "workspace")
    assert HANDBOOK in await ask(candor, fake_llm, "deploy freeze?", "CPARTNER1")


async def test_guests_and_other_teams_get_no_workspace_knowledge_in_a_dm(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_workspace_knowledge(deps)
    await add_private_knowledge(deps)
    candor.slack.set_user("UGUEST0001", is_restricted=True)
    candor.slack.set_user("USINGLE001", is_restricted=True, is_ultra_restricted=True)
    candor.slack.set_user("UPARTNER01", team_id="T9PARTNER")
    candor.slack.set_user("USTRANGER1", is_stranger=True)
    for user in ("UGUEST0001", "USINGLE001", "UPARTNER01", "USTRANGER1"):
        candor.slack.set_user_channels(user, ["G1"])

    for i, user in enumerate(("UGUEST0001", "USINGLE001", "UPARTNER01", "USTRANGER1")):
        sent = await ask(
            candor, fake_llm, "deploy freeze and acquisition codename?", f"D{i}X", user
        )
        assert HANDBOOK not in sent and "BLUEHERON" not in sent, user

    candor.slack.set_user("UMEMBER001")
    assert HANDBOOK in await ask(candor, fake_llm, "deploy freeze?", "D9X", "UMEMBER001")


async def test_a_guest_asking_in_a_channel_gets_only_that_channels_grants(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_workspace_knowledge(deps)
    candor.slack.set_user("UGUEST0001", is_restricted=True)

    assert HANDBOOK not in await ask(candor, fake_llm, "deploy freeze?", "CGENERAL1", "UGUEST0001")
    assert HANDBOOK in await ask(candor, fake_llm, "deploy freeze?", "CGENERAL1", "U1")
