"""Confidence through the real manager, store, ledger and the fake LLM server.

The fake scripts answers and logprobs; the assertions are on what a user or an admin
sees: the `Answer`, the stored answer row, the requests the LLM received, ledger rows.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.confidence import NO_SOURCE_REASON
from bot.conversation import NO_SOURCE_ANSWER
from bot.db import repo
from bot.db.models import AnswerRow
from bot.deps import Deps
from bot.kb import ScopedKnowledge
from knowledge import Document, Scope
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import make_turn
from tests.spend.helpers import ledger_rows

DOCS = {
    "deploy": "# Deploys\n\nRoll back a bad deploy with `make rollback` on the bastion host; "
    "the rollback restores the previous release in about two minutes.",
    "vacation": "# Vacation\n\nRequest vacation days in the HR portal two weeks ahead; "
    "your manager approves the request.",
    "coffee": "# Coffee\n\nThe coffee machine on the third floor is descaled every Monday.",
    "badges": "# Badges\n\nLost badges are replaced at the front desk with photo ID.",
    "printing": "# Printing\n\nColour printing needs a code from the office manager.",
}
QUESTION = "How do I roll back a bad deploy?"


async def add_docs(deps: Deps) -> None:
    knowledge = deps.knowledge
    assert isinstance(knowledge, ScopedKnowledge)
    for name, text in DOCS.items():
        await knowledge.kb.add_document(
            Document(
                source=f"file:{name}.md",
                title=name.title(),
                link=f"{name}.md",
                scope=Scope.workspace(),
                text=text,
            )
        )


async def set_channel(deps: Deps, **values: object) -> None:
    async with deps.db.sessions.begin() as session:
        row = await repo.get_or_create_channel_row(
            session, workspace_id="T1", channel_id="C1", now=deps.clock.now()
        )
        for key, value in values.items():
            setattr(row, key, value)


async def answer_rows(deps: Deps) -> list[AnswerRow]:
    async with deps.db.sessions() as session:
        return list((await session.execute(select(AnswerRow))).scalars())


async def add_doc(deps: Deps, name: str, scope: Scope) -> None:
    """One document of `DOCS` in `scope`."""
    knowledge = deps.knowledge
    assert isinstance(knowledge, ScopedKnowledge)
    await knowledge.kb.add_document(
        Document(
            source=f"file:{name}.md",
            title=name.title(),
            link=f"{name}.md",
            scope=scope,
            text=DOCS[name],
        )
    )


async def test_answer_over_empty_retrieval_citing_nothing_is_flagged_and_stored(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    # Knowledge the question may read, none of it about deploys: an empty *retrieval*,
    # not an empty knowledge base (that is not flagged, see below).
    await add_doc(deps, "coffee", Scope.workspace())
    fake_llm.enqueue("Just run the deploy script again and it will probably work.")

    answer = await deps.manager.reply(make_turn(QUESTION, event_id="Ev1"))

    assert answer.hits == []
    assert answer.flagged is True
    assert answer.no_answer is False  # it answered; the answer is unsupported
    assert answer.reasons[0] == NO_SOURCE_REASON
    assert answer.confidence is not None and answer.confidence < 0.05
    [row] = await answer_rows(deps)
    assert row.flagged is True
    assert row.confidence == answer.confidence
    assert row.reasons == answer.reasons
    assert row.signals is not None and row.signals["hits"] == 0
    assert row.signals["cites"] is False


async def test_an_empty_knowledge_base_is_no_knowledge_base_not_a_reason_to_flag(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    """A fresh install: nothing ingested, so a plain answer is scored from what exists."""
    fake_llm.enqueue("Hello! How can I help?", logprob=-0.05)

    answer = await deps.manager.reply(make_turn("hi", event_id="Ev1"))

    assert answer.flagged is False
    assert answer.reasons == []
    assert "hits" not in answer.signals  # no retrieval signals at all
    assert answer.confidence is not None and answer.confidence > 0.9  # from the logprobs
    [row] = await answer_rows(deps)
    assert row.flagged is False


async def test_unrelated_knowledge_in_the_channels_own_scope_still_flags_no_source(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_doc(deps, "vacation", Scope.channel("C1"))
    fake_llm.enqueue("Just run the deploy script again.", logprob=-0.05)

    answer = await deps.manager.reply(make_turn(QUESTION))

    assert answer.hits == []
    assert answer.flagged is True
    assert answer.reasons[0] == NO_SOURCE_REASON


async def test_knowledge_only_in_another_private_channel_does_not_count_for_this_one(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    """The "is there any knowledge?" check reads only the asker's scopes (in the query)."""
    await add_doc(deps, "vacation", Scope.channel("CPRIV", private=True))
    fake_llm.enqueue("Just run the deploy script again.", logprob=-0.05)

    answer = await deps.manager.reply(make_turn(QUESTION))

    assert answer.flagged is False
    assert "hits" not in answer.signals
    fake_llm.enqueue("Use the portal.", logprob=-0.05)
    private = await deps.manager.reply(
        make_turn("How do I go on holiday?", channel_id="CPRIV", thread_ts="2.0")
    )
    assert private.flagged is True  # where it is readable, it counts (and does not cover it)
    assert private.reasons[0] == NO_SOURCE_REASON


async def test_well_cited_answer_over_a_strong_hit_is_not_flagged(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_docs(deps)
    fake_llm.enqueue(
        "Roll back a bad deploy with `make rollback` on the bastion host [1].",
        logprobs=[-0.02, -0.1, -0.05],
    )

    answer = await deps.manager.reply(make_turn(QUESTION))

    assert answer.hits[0].source == "file:deploy.md"
    assert answer.flagged is False
    assert answer.confidence is not None and answer.confidence > 0.9
    assert answer.signals["logprob_tokens"] > 0
    assert answer.signals["cited_overlap"] == 1.0
    assert answer.reasons == []


async def test_citing_a_source_that_does_not_exist_is_named(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_docs(deps)
    fake_llm.enqueue("Use `make rollback` on the bastion host [1], as the runbook says [7].")

    answer = await deps.manager.reply(make_turn(QUESTION))

    assert answer.reasons[0] == "cites [7], which does not exist"
    assert answer.signals["missing_citations"] == [7]


async def test_a_server_without_logprobs_still_gets_a_score(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_docs(deps)
    fake_llm.enqueue("Roll back with `make rollback` on the bastion host [1].", no_logprobs=True)

    answer = await deps.manager.reply(make_turn(QUESTION))

    assert fake_llm.last["logprobs"] is True  # asked, not sent
    assert "logprob_mean" not in answer.signals
    assert answer.confidence is not None and 0.0 <= answer.confidence <= 1.0
    assert answer.flagged is False


async def test_low_logprobs_say_the_model_was_unsure(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_docs(deps)
    text = "Roll back with `make rollback` on the bastion host [1]."
    fake_llm.enqueue(text, logprob=-0.02)
    sure = await deps.manager.reply(make_turn(QUESTION, thread_ts="1.0"))
    fake_llm.enqueue(text, logprob=-2.0)
    unsure = await deps.manager.reply(make_turn(QUESTION, thread_ts="2.0"))

    assert unsure.confidence is not None and sure.confidence is not None
    assert unsure.confidence < sure.confidence
    assert "the model was unsure" in unsure.reasons
    assert "the model was unsure" not in sure.reasons


async def test_an_abstention_is_no_answer_not_unreliable(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_docs(deps)
    fake_llm.enqueue("The sources do not cover parking permits, so I don't know.")

    answer = await deps.manager.reply(make_turn("Where do I get a parking permit?"))

    assert answer.no_answer is True
    assert answer.flagged is True
    assert answer.reasons[0] == "the model found no answer in the sources"


async def test_grounded_channels_are_told_to_answer_from_the_sources(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_docs(deps)
    await deps.manager.reply(make_turn(QUESTION))

    system = fake_llm.last["messages"][0]["content"]
    assert "Answer from these sources" in system
    assert "cite each source you use as [n]" in system
    assert "say plainly that the sources do not cover it" in system


async def test_strict_mode_without_a_source_makes_no_llm_call_and_bills_nothing(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_docs(deps)
    await set_channel(deps, strict=True)

    answer = await deps.manager.reply(make_turn("What is the wifi password?", event_id="Ev9"))

    assert fake_llm.requests == []
    assert answer.text == NO_SOURCE_ANSWER
    assert answer.no_answer is True and answer.flagged is True
    assert answer.reasons == [NO_SOURCE_REASON]
    assert answer.usage.total_tokens == 0
    assert await ledger_rows(deps.db) == []
    [row] = await answer_rows(deps)
    assert row.flagged is True and row.reasons == [NO_SOURCE_REASON]


async def test_strict_mode_with_an_empty_knowledge_base_still_has_no_source(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_channel(deps, strict=True)

    answer = await deps.manager.reply(make_turn("hi"))

    assert fake_llm.requests == []
    assert answer.text == NO_SOURCE_ANSWER
    assert answer.reasons == [NO_SOURCE_REASON]


async def test_strict_mode_with_a_source_answers(deps: Deps, fake_llm: FakeOpenAIServer) -> None:
    await add_docs(deps)
    await set_channel(deps, strict=True)
    fake_llm.enqueue("Use `make rollback` on the bastion host [1].")

    answer = await deps.manager.reply(make_turn(QUESTION))

    assert len(fake_llm.requests) == 1
    assert answer.no_answer is False


async def test_the_judge_is_billed_and_changes_the_confidence(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await add_docs(deps)
    text = "Roll back with `make rollback` on the bastion host [1]."
    fake_llm.enqueue(text)
    plain = await deps.manager.reply(make_turn(QUESTION, thread_ts="1.0", event_id="EvA"))

    await set_channel(deps, judge_model="gpt-4o-mini")
    fake_llm.enqueue(text)
    fake_llm.enqueue(
        "no", top_logprobs={"no": -0.05, "yes": -3.0}, prompt_tokens=300, completion_tokens=1
    )
    judged = await deps.manager.reply(make_turn(QUESTION, thread_ts="2.0", event_id="EvB"))

    judge_request = fake_llm.requests[-1]
    assert judge_request["max_tokens"] == 1
    assert judge_request["top_logprobs"] == 5
    assert "<question>How do I roll back a bad deploy?</question>" in str(judge_request["messages"])
    assert plain.confidence is not None and judged.confidence is not None
    assert judged.confidence < plain.confidence
    assert judged.signals["judge_p_yes"] == pytest.approx(
        0.0497, abs=1e-3
    )  # e^-3 / (e^-3 + e^-0.05)
    assert judged.flagged is True
    assert "a second model judged that the sources do not support this answer" in judged.reasons
    rows = await ledger_rows(deps.db)
    judge_rows = [r for r in rows if r.call_id == "EvB:judge"]
    assert len(judge_rows) == 1
    assert judge_rows[0].prompt_tokens == 300 and judge_rows[0].completion_tokens == 1
