"""Redaction in the conversation manager, against the fake LLM server and a real database."""

from __future__ import annotations

import json

from bot.conversation import HistoryMessage
from bot.db import repo
from bot.deps import Deps
from bot.kb import ScopedKnowledge, build_knowledge_base
from bot.tokens import TokenCounter
from knowledge import AllowedScopes, Document, Scope
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import make_turn
from tests.redaction.helpers import (
    AWS_KEY,
    CARD,
    EMAIL,
    IBAN,
    NOT_A_CARD,
    OPENAI_KEY,
    SLACK_TOKEN,
    SSN,
    OneChunk,
    assert_none_in,
    every_row,
)
from tests.tools.helpers import allow


async def set_channel(deps: Deps, **values: object) -> None:
    async with deps.db.sessions.begin() as session:
        row = await repo.get_or_create_channel_row(
            session, workspace_id="T1", channel_id="C1", now=deps.clock.now()
        )
        for key, value in values.items():
            setattr(row, key, value)


async def test_question_history_and_sources_are_redacted_and_stored_redacted(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_channel(deps, redact_pii=True)
    chunk = OneChunk(f"Refunds: write to {EMAIL} with the IBAN {IBAN}.", title=f"From {EMAIL}")
    deps.manager.knowledge = chunk
    history = (
        HistoryMessage("user", f"My SSN is {SSN} and the bot token {SLACK_TOKEN}"),
        HistoryMessage("assistant", "Noted."),
    )
    question = f"Refund card {CARD} (ref {NOT_A_CARD}), key {OPENAI_KEY}, AWS {AWS_KEY}?"

    answer = await deps.manager.reply(make_turn(question, history_fallback=history, event_id="Ev1"))

    sent = json.dumps(fake_llm.requests)
    values = (CARD, EMAIL, IBAN, SSN, SLACK_TOKEN, OPENAI_KEY, AWS_KEY)
    assert_none_in(sent, values)
    assert NOT_A_CARD in sent
    assert_none_in(" ".join(chunk.queries), values)  # the knowledge query too
    assert answer.notices == [
        "I withheld 8 items (2 API keys, a payment card number, a Slack token, "
        "a national ID number, an IBAN, 2 email addresses) from the language model."
    ]
    rows = await every_row(deps.db)
    assert_none_in(rows, values)
    assert "[redacted payment card number]" in rows


async def test_nothing_withheld_means_no_notice(deps: Deps, fake_llm: FakeOpenAIServer) -> None:
    answer = await deps.manager.reply(make_turn("How do I deploy?"))
    assert answer.notices == []
    assert fake_llm.last["messages"][-1]["content"] == "How do I deploy?"


async def test_knowledge_ingestion_redacts_when_switched_on(deps: Deps) -> None:
    deps.settings.candor.redact_knowledge = True
    deps.settings.candor.redact_pii = True
    kb = build_knowledge_base(deps.settings, TokenCounter(None), None)
    try:
        await kb.add_document(
            Document(
                source="file:/runbook.md",
                title="Runbook",
                link="runbook.md",
                scope=Scope.workspace(),
                text=f"Deploy token {SLACK_TOKEN}; questions to {EMAIL}.",
            )
        )
        hits = await kb.search("deploy token questions", AllowedScopes(frozenset({"workspace"})))
    finally:
        await kb.close()
    stored = " ".join(h.text for h in hits)
    assert "[redacted Slack token]" in stored and "[redacted email address]" in stored
    assert_none_in(stored, (SLACK_TOKEN, EMAIL))


async def test_tool_results_reach_the_model_redacted(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    knowledge = deps.knowledge
    assert isinstance(knowledge, ScopedKnowledge)
    await knowledge.kb.add_document(
        Document(
            source="file:ops.md",
            title="Ops",
            link="ops.md",
            scope=Scope.workspace(),
            text=f"# Rotation\n\nThe deploy bot token is {SLACK_TOKEN} until Friday.",
        )
    )
    await allow(deps, "builtin/search_knowledge")
    fake_llm.enqueue_tool_calls(("search_knowledge", {"query": "deploy bot token rotation"}))
    fake_llm.enqueue("Rotate it on Friday.")

    answer = await deps.manager.reply(make_turn("hello?"))

    tool_messages = [m for m in fake_llm.last["messages"] if m.get("role") == "tool"]
    assert tool_messages and "[redacted Slack token]" in tool_messages[0]["content"]
    assert_none_in(json.dumps(fake_llm.requests), (SLACK_TOKEN,))
    assert "I withheld 1 item (a Slack token) from the language model." in answer.notices
