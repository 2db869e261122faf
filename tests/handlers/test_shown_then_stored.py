"""An answer is shown in full before it is written down, and written down whatever Slack does.

Issue 13 (throughput): storing the answer (its bill, both turns and its row: a write
transaction of several round trips) used to come between the model's last words and the
end of the answer in Slack. Now Slack gets the end first; the answer's buttons name its
event (`event:<id>`) until the row exists, and a click finds the row through it. The bill
and the thread's memory never depend on Slack taking the answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, select, text

from bot.db import repo
from bot.db.models import AnswerFeedbackRow, AnswerRow, ConversationTurnRow, ProcessedEventRow
from bot.deps import Deps
from bot.spend.guard import SpendLedger
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention, block_actions, event_callback
from tests.handlers.conftest import Candor
from tests.helpers import button_value, final_blocks, make_turn


async def rows(deps: Deps, model: Any) -> list[Any]:
    async with deps.db.sessions() as session:
        return list((await session.execute(select(model))).scalars())


async def answered(candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps, text: str) -> AnswerRow:
    """Mention Candor, let the fake model answer `text`; the one answer row stored."""
    fake_llm.enqueue(text)
    await candor.send.event(app_mention("<@UBOT> a question?"))
    await candor.idle()
    [answer] = await rows(deps, AnswerRow)
    return answer


async def test_slack_has_the_whole_answer_before_its_row_is_written(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    stopped_when_stored: list[int] = []

    def on_statement(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ANSWERS"):
            stopped_when_stored.append(len(candor.slack.calls_to("chat.stopStream")))

    engine = deps.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        fake_llm.enqueue("Deploys run with make deploy.", prompt_tokens=40, completion_tokens=9)
        await candor.send.event(app_mention("<@UBOT> how do deploys run?", user="U1"))
        await candor.idle()
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)

    assert stopped_when_stored == [1]  # the end of the answer was in Slack already
    [message] = candor.slack.messages("C1")
    assert message.text == "Deploys run with make deploy."
    # ... and what follows it still happened: the row, the thread's memory, the bill.
    [answer] = await rows(deps, AnswerRow)
    assert answer.text == "Deploys run with make deploy."
    assert [t.role for t in await rows(deps, ConversationTurnRow)] == ["user", "assistant"]
    usage = await SpendLedger(deps.db, deps.settings, deps.clock).user_usage("U1")
    assert usage.calls == 1 and usage.spent_micro_usd > 0 and usage.held_micro_usd == 0
    assert [e.status for e in await rows(deps, ProcessedEventRow)] == ["answered"]


async def test_when_slack_refuses_the_end_of_the_answer_the_bill_and_memory_still_stand(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    fake_llm.enqueue("A long answer Slack will not finish.", completion_tokens=9)
    for method in ("chat.stopStream", "chat.update", "chat.postMessage"):
        candor.slack.fail_next(method, "fatal_error", times=3)

    await candor.send.event(app_mention("<@UBOT> will it end?", user="U1"))
    await candor.idle()

    usage = await SpendLedger(deps.db, deps.settings, deps.clock).user_usage("U1")
    assert usage.calls == 1 and usage.spent_micro_usd > 0 and usage.held_micro_usd == 0
    [answer] = await rows(deps, AnswerRow)
    assert answer.text == "A long answer Slack will not finish."
    assert len(await rows(deps, ConversationTurnRow)) == 2  # the thread remembers it
    assert [e.status for e in await rows(deps, ProcessedEventRow)] == ["failed"]


async def test_an_answer_cut_off_while_slack_holds_back_its_end_is_still_billed_and_stored(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    fake_llm.enqueue("Everything but the end.", completion_tokens=9)
    candor.slack.rate_limit_next("chat.stopStream", retry_after=5)  # the end waits 5 s

    await candor.send.event(app_mention("<@UBOT> a question?", user="U1"))
    await candor.slack.wait_for("chat.stopStream")
    await candor.runtime.shutdown(grace_seconds=0.1)  # Candor restarts meanwhile

    usage = await SpendLedger(deps.db, deps.settings, deps.clock).user_usage("U1")
    assert usage.calls == 1 and usage.spent_micro_usd > 0 and usage.held_micro_usd == 0
    [answer] = await rows(deps, AnswerRow)
    assert answer.text == "Everything but the end."
    assert [e.status for e in await rows(deps, ProcessedEventRow)] == ["cut_off"]


async def test_the_claim_is_marked_answered_in_the_same_commit_as_the_answer(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    committed: list[list[str]] = []  # the statements of each commit
    pending: list[str] = []
    marks: list[str] = []
    engine = deps.db.engine.sync_engine

    def on_statement(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        pending.append(" ".join(statement.split()[:3]).upper())
        if pending[-1].startswith("UPDATE PROCESSED_EVENTS"):
            marks.append(statement)

    def on_commit(_conn: Any) -> None:
        committed.append(pending[:])
        pending.clear()

    fake_llm.enqueue("Deploys run with make deploy.", completion_tokens=9)
    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)
    try:
        await candor.send.event(app_mention("<@UBOT> how do deploys run?", user="U1"))
        await candor.idle()
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)

    [stored] = [c for c in committed if "INSERT INTO ANSWERS" in c]
    assert "UPDATE PROCESSED_EVENTS SET" in stored
    assert len(marks) == 1  # not marked again on its own
    assert [e.status for e in await rows(deps, ProcessedEventRow)] == ["answered"]


async def test_when_the_answer_cannot_be_stored_the_claim_is_still_marked_answered(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    # A real failure of the storing transaction: the answers table is gone for a moment.
    async with deps.db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE answers RENAME TO answers_off"))
    body = event_callback(app_mention("<@UBOT> a question?", user="U1"))
    try:
        fake_llm.enqueue("Shown, never stored.", completion_tokens=9)
        await candor.send.event(body)
        await candor.idle()
    finally:
        async with deps.db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE answers_off RENAME TO answers"))

    assert [m.text for m in candor.slack.messages("C1")] == ["Shown, never stored."]
    usage = await SpendLedger(deps.db, deps.settings, deps.clock).user_usage("U1")
    assert usage.calls == 1 and usage.held_micro_usd == 0  # billed on its own
    # Marked apart from the failed store, so a late retry of the message stays silent.
    assert [e.status for e in await rows(deps, ProcessedEventRow)] == ["answered"]
    await candor.send.event(body, retry_num=1)
    await candor.idle()
    assert len(fake_llm.requests) == 1


async def test_a_vote_from_the_answers_button_lands_on_its_row(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    answer = await answered(candor, fake_llm, deps, "Lunch is at noon.")

    pressed = button_value(final_blocks(candor), "candor_feedback_up")
    assert pressed == f"up:event:{answer.event_id}"
    url = candor.slack.response_url()
    status, _ = await candor.send.action(
        block_actions("candor_feedback_up", pressed, user_id="U9", response_url=url)
    )
    await candor.slack.wait_for("response_url")

    assert status == 200
    [vote] = await rows(deps, AnswerFeedbackRow)
    assert (vote.answer_id, vote.user_id, vote.vote) == (answer.id, "U9", "up")


async def test_a_button_names_an_answer_by_its_id_or_its_event(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    answer = await answered(candor, fake_llm, deps, "First.")
    assert answer.event_id

    async with deps.db.sessions() as session:
        found = [
            await repo.answer_id_for(session, ref)
            for ref in (
                str(answer.id),  # buttons of answers stored before they were shown
                f"event:{answer.event_id}",
                "event:EvNeverAnswered",
                "event:",
                "lunch",
                "",
            )
        ]
    assert found == [answer.id, answer.id, None, None, None, None]


async def test_what_is_written_after_the_answer_is_shown_waits_behind_new_claims(
    fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    """A new message's claim that queued for the writer gate before the shown answer's
    bill and row gets in first: nobody waits on those, someone waits on the claim."""
    gate = deps.db.write_gate
    order: list[str] = []
    engine = deps.db.engine.sync_engine

    def on_statement(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ANSWERS"):
            order.append("answer stored")

    async def new_claim() -> None:
        async with deps.db.write() as session:  # a claim, as SQLite makes it
            order.append("claim")
            await repo.claim_event(session, event_id="Ev-next", kind="x", now=deps.clock.now())

    claiming: list[asyncio.Task[None]] = []

    async def deliver(_answer: Any) -> None:
        # While the answer is being shown, the gate is full and the next message queues.
        for _ in range(gate.capacity):
            await gate.acquire()
        claiming.append(asyncio.create_task(new_claim()))
        await asyncio.sleep(0.01)
        asyncio.get_running_loop().call_later(0.05, release_all)

    def release_all() -> None:
        for _ in range(gate.capacity):
            gate.release()

    fake_llm.enqueue("Shown first.", completion_tokens=3)
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        answer = await deps.manager.reply(make_turn(event_id="Ev-shown"), deliver=deliver)
        await asyncio.gather(*claiming)
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)

    assert order == ["claim", "answer stored"]
    assert answer.answer_id is not None
    usage = await SpendLedger(deps.db, deps.settings, deps.clock).user_usage("U1")
    assert usage.calls == 1 and usage.held_micro_usd == 0
