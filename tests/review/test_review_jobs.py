"""The review loop's scheduled jobs, through Candor's real Slack app with the injected clock:
the weekly digest in the review channel, and the one reminder of an unanswered Ask a human."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.clock import FixedClock
from bot.db.review_models import AnswerReviewRow
from bot.deps import Deps
from bot.jobs.runner import JobRunner
from bot.review import experts, items
from handlers import render
from tests.conftest import START
from tests.fakes.openai_server import FakeOpenAIServer
from tests.handlers.conftest import Candor
from tests.review.conftest import (
    REVIEW,
    REVIEWER,
    ask,
    click,
    ephemeral_texts,
    last_answer,
    review_of,
)


def review_posts(candor: Candor) -> list[Any]:
    return [
        c
        for c in candor.slack.calls_to("chat.postMessage")
        if c.get("channel") == REVIEW and not c.get("thread_ts")
    ]


async def answered(candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer, question: str) -> int:
    fake_llm.enqueue("An answer.")
    await ask(candor, question)
    return (await last_answer(deps)).id


async def run(deps: Deps, job: str) -> str:
    outcome = await JobRunner(deps, holder="replica-a").run_now(job)
    assert outcome.ok, outcome.error
    return outcome.result


async def test_the_weekly_digest_counts_the_weeks_items_by_status_and_links_the_oldest_open(
    reviewed: Candor,
    deps: Deps,
    fake_llm: FakeOpenAIServer,
    verdicts: list[dict[str, Any]],
    clock: FixedClock,
) -> None:
    flag = {"flagged": True, "reasons": ["the answer cites no source"]}
    clock.set(START - timedelta(days=8))  # last week's: open, but not this week's count
    verdicts.append(flag)
    old = await answered(reviewed, deps, fake_llm, "where is the <!channel> old runbook?")
    clock.set(START)
    verdicts.extend([flag, flag])
    billing = await answered(reviewed, deps, fake_llm, "who owns billing?")  # stays open
    resolved = await answered(reviewed, deps, fake_llm, "when is the freeze?")
    voted = await answered(reviewed, deps, fake_llm, "what is the VPN host?")
    await click(reviewed, f"{render.FEEDBACK_ACTION}_down", f"down:{voted}", user="U7")
    asked = await answered(reviewed, deps, fake_llm, "how do I get a badge?")
    await click(reviewed, render.ASK_HUMAN_ACTION, str(asked), user="U1")
    await reviewed.slack.wait_until(lambda: len(review_posts(reviewed)) == 5, what="5 posts")
    async with deps.db.write() as session:
        item = await items.for_answer(session, answer_id=resolved)
        assert item is not None
        await items.resolve(session, review_id=item.review_id, reviewer_id=REVIEWER, now=START)
        item = await items.for_answer(session, answer_id=voted)
        assert item is not None
        await items.correct(
            session, review_id=item.review_id, reviewer_id=REVIEWER, text="vpn.corp", now=START
        )
    clock.set(START + timedelta(hours=1))

    result = await run(deps, "review_digest")

    assert result == f"posted to {REVIEW}: 4 raised, 3 open"
    [digest] = [m for m in reviewed.slack.messages(REVIEW) if "Weekly review digest" in m.text]
    lines = digest.text.splitlines()
    assert lines[:4] == [
        "*Weekly review digest* for 2026-11-19 to 2026-11-26",
        "Came up for review: 4 answers (2 flagged, 1 👎, 1 Ask a human); 1 👎 votes.",
        "Where they stand: 2 open, 1 resolved, 1 corrected.",
        "Open for review in all: 3. Waiting longest:",
    ]
    old_row, billing_row = await review_of(deps, old), await review_of(deps, billing)
    assert old_row is not None and billing_row is not None

    def link(row: AnswerReviewRow) -> str:
        return f"https://fake.slack.com/archives/{REVIEW}/p{str(row.review_ts).replace('.', '')}"

    # People's words are inert: no live <!channel> ping reaches the review channel.
    assert lines[4] == (
        f"1. <{link(old_row)}|where is the &lt;!channel&gt; old runbook?> "
        "(flagged in <#C1>, waiting 8 days)"
    )
    assert lines[5] == (
        f"2. <{link(billing_row)}|who owns billing?> (flagged in <#C1>, waiting 1 hour)"
    )
    assert lines[6].startswith("3. <") and "how do I get a badge?" in lines[6]
    assert "(Ask a human in <#C1>, waiting 1 hour)" in lines[6]
    assert len(lines) == 7


async def test_the_digest_without_a_review_channel_posts_nothing(
    reviewed: Candor, deps: Deps
) -> None:
    deps.settings.slack.review_channel = ""
    assert await run(deps, "review_digest") == "no review channel set"
    assert reviewed.slack.calls_to("chat.postMessage") == []


async def test_an_unanswered_ask_a_human_is_reminded_once_after_the_wait_and_not_before(
    reviewed: Candor,
    deps: Deps,
    fake_llm: FakeOpenAIServer,
    verdicts: list[dict[str, Any]],
    clock: FixedClock,
) -> None:
    async with deps.db.write() as session:
        await experts.set_experts(
            session,
            workspace_id="T1",
            channel_id="C1",
            user_ids=["UEXP1", "UEXP2"],
            actor_id="UADMIN0001",
            now=START,
        )
    # Flagged at 09:00, but Ask a human pressed only at 10:00: the wait counts from then.
    verdicts.append({"flagged": True, "reasons": ["the model was unsure"]})
    fake_llm.enqueue("Maybe port 8080.")
    mention = await ask(reviewed, "which port does the API use?")
    answer = await last_answer(deps)
    clock.advance(hours=1)
    await click(reviewed, render.ASK_HUMAN_ACTION, str(answer.id), user="U1")
    await reviewed.slack.wait_until(lambda: bool(ephemeral_texts(reviewed)), what="reply")

    def reminders() -> list[str]:
        thread = reviewed.slack.messages("C1", thread_ts=mention["ts"])
        return [m.text for m in thread if m.text.startswith("⏰")]

    clock.advance(hours=3, minutes=59)
    assert await run(deps, "ask_human_reminders") == "0 reminders"
    assert reminders() == []

    clock.advance(minutes=2)
    assert await run(deps, "ask_human_reminders") == "1 reminders"
    assert reminders() == [
        "⏰ This question has waited 4 hours for a person: <@UEXP1> <@UEXP2>, "
        "could one of you take a look?"
    ]

    clock.advance(hours=5)
    assert await run(deps, "ask_human_reminders") == "0 reminders"
    assert len(reminders()) == 1


async def test_a_resolved_ask_a_human_gets_no_reminder(
    reviewed: Candor, deps: Deps, fake_llm: FakeOpenAIServer, clock: FixedClock
) -> None:
    fake_llm.enqueue("Ask facilities.")
    mention = await ask(reviewed, "where is the spare key?")
    answer = await last_answer(deps)
    await click(reviewed, render.ASK_HUMAN_ACTION, str(answer.id), user="U1")
    await reviewed.slack.wait_until(lambda: bool(ephemeral_texts(reviewed)), what="reply")
    async with deps.db.write() as session:
        item = await items.for_answer(session, answer_id=answer.id)
        assert item is not None and item.is_open
        await items.resolve(session, review_id=item.review_id, reviewer_id=REVIEWER, now=START)

    clock.advance(hours=6)
    assert await run(deps, "ask_human_reminders") == "0 reminders"
    thread = reviewed.slack.messages("C1", thread_ts=mention["ts"])
    assert not any(m.text.startswith("⏰") for m in thread)
