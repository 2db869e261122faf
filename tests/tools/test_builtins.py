"""Built-in tools: `search_knowledge` keeps to the asking channel's scopes and its finds are
cited like retrieved sources."""

from __future__ import annotations

from dataclasses import dataclass

from bot.db import repo
from bot.deps import Deps
from bot.kb import ScopedKnowledge
from knowledge import Document, Scope
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import make_turn
from tests.tools.helpers import allow

PUBLIC = "The deploy freeze starts every Friday at 15:00 and ends Monday at 09:00."
PRIVATE = "The acquisition codename is BLUEHERON and the price is 40 million."


@dataclass
class Directory:
    """C1 is public, G1 private; U1 is a member of the workspace."""

    async def is_private(self, channel_id: str) -> bool:
        return channel_id.startswith("G")

    async def is_shared_externally(self, channel_id: str) -> bool:
        return False

    async def is_workspace_member(self, user_id: str, workspace_id: str) -> bool:
        return True

    async def members(self, channel_id: str) -> frozenset[str]:
        return frozenset({"U1", "U2"}) if channel_id == "C1" else frozenset({"U9"})

    async def channels_of(self, user_id: str) -> frozenset[str]:
        return frozenset({"C1"})


async def _knowledge(deps: Deps) -> ScopedKnowledge:
    knowledge = deps.knowledge
    assert isinstance(knowledge, ScopedKnowledge)
    knowledge.directory = Directory()
    for source, scope, text in (
        ("file:handbook.md", Scope.workspace(), "# Deploys\n\n" + PUBLIC),
        ("slack:G1", Scope.channel("G1", private=True), "# Deal\n\n" + PRIVATE),
    ):
        await knowledge.kb.add_document(
            Document(source=source, title=source, link=source, scope=scope, text=text)
        )
    return knowledge


async def test_search_knowledge_cannot_read_another_channels_private_scope(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await _knowledge(deps)
    await allow(deps, "builtin/search_knowledge")
    # Even granted to the channel, a private channel's scope is not read in a public one.
    async with deps.db.sessions.begin() as session:
        row = await repo.get_or_create_channel_row(
            session, workspace_id="T1", channel_id="C1", now=deps.clock.now()
        )
        row.kb_scopes = ["workspace", "channel:G1"]
    fake_llm.enqueue_tool_calls(
        ("search_knowledge", {"query": "acquisition codename BLUEHERON price"})
    )
    fake_llm.enqueue("I found nothing about that.")

    answer = await deps.manager.reply(make_turn("Tell me a secret about the weather"))

    sent = "\n".join(str(m.get("content")) for m in fake_llm.last["messages"])
    assert "40 million" not in sent
    assert "No knowledge found" in sent
    assert all(h.scope != "channel:G1" for h in answer.hits)


async def test_search_knowledge_finds_are_cited_like_retrieved_sources(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await _knowledge(deps)
    await allow(deps, "builtin/search_knowledge")
    fake_llm.enqueue_tool_calls(("search_knowledge", {"query": "deploy freeze Friday"}))
    fake_llm.enqueue("The freeze starts Friday at 15:00 [1].")

    answer = await deps.manager.reply(make_turn("zzz unrelated words qqq"))

    tool_result = next(m for m in fake_llm.last["messages"] if m["role"] == "tool")["content"]
    assert tool_result.startswith("[1] file:handbook.md (file:handbook.md)")
    assert PUBLIC in tool_result
    assert [(c.index, c.source) for c in answer.citations] == [(1, "file:handbook.md")]
    assert answer.tool_calls[0]["tool"] == "builtin/search_knowledge"
