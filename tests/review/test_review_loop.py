"""What users and reviewers see: the warning line, Ask a human, the review channel,
Mark resolved, and a correction that becomes cited knowledge in its channel only."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from bot.db.admin_models import AuditRow
from bot.db.review_models import ChannelExpertRow
from bot.deps import Deps
from handlers import render
from knowledge import Scope
from tests.confidence.test_confidence import add_doc
from tests.fakes import slack_events as ev
from tests.fakes.openai_server import FakeOpenAIServer
from tests.handlers.conftest import Candor
from tests.helpers import button_value, final_blocks
from tests.review.conftest import (
    REVIEW,
    REVIEWER,
    ask,
    blocks_of,
    click,
    ephemeral_texts,
    last_answer,
    review_of,
)

ADMIN = "UADMIN0001"


def action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [
        str(element.get("action_id"))
        for block in blocks
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    ]


def review_posts(candor: Candor) -> list[Any]:
    return [
        c
        for c in candor.slack.calls_to("chat.postMessage")
        if c.get("channel") == REVIEW and not c.get("thread_ts")
    ]


async def test_flagged_answer_shows_the_reason_and_ask_a_human_and_reaches_review(
    reviewed: Candor, deps: Deps, fake_llm: FakeOpenAIServer, verdicts: list[dict[str, Any]]
) -> None:
    verdicts.append({"flagged": True, "confidence": 0.21, "reasons": ["no source covers 'Django'"]})
    fake_llm.enqueue("Django migrations run with `manage.py migrate`.")
    mention = await ask(reviewed, "how do I migrate Django?")

    blocks = final_blocks(reviewed)
    shown = json.dumps(blocks, ensure_ascii=False)
    assert "⚠️ I'm not sure about this answer: no source covers 'Django'." in shown
    assert render.ASK_HUMAN_ACTION in action_ids(blocks)
    # The answer itself is still delivered.
    assert "manage.py migrate" in " ".join(m.text for m in reviewed.slack.messages("C1"))

    await reviewed.slack.wait_until(lambda: len(review_posts(reviewed)) == 1, what="review post")
    [post] = review_posts(reviewed)
    text = json.dumps(blocks_of(post.body), ensure_ascii=False)
    assert "how do I migrate Django?" in text
    assert "manage.py migrate" in text
    assert "no source covers 'Django'" in text
    assert "confidence 0.21" in text
    assert "https://fake.slack.com/archives/C1/p" in text  # the permalink
    assert action_ids(blocks_of(post.body)) == [
        render.REVIEW_RESOLVE_ACTION,
        render.REVIEW_CORRECT_ACTION,
    ]
    answer = await last_answer(deps)
    row = await review_of(deps, answer.id)
    assert row is not None
    assert (row.kind, row.status, row.thread_ts) == ("flagged", "open", mention["ts"])
    assert (row.review_channel, row.review_ts) == (REVIEW, post_ts(reviewed, post))


def post_ts(candor: Candor, post: Any) -> str:
    [message] = [
        m for m in candor.slack.messages(REVIEW) if m.text == post.get("text") and not m.thread_ts
    ]
    return message.ts


async def test_no_answer_found_says_so_rather_than_unreliable(
    reviewed: Candor, fake_llm: FakeOpenAIServer, verdicts: list[dict[str, Any]]
) -> None:
    verdicts.append(
        {"flagged": True, "no_answer": True, "reasons": ["no source clears this channel's floor"]}
    )
    fake_llm.enqueue("I don't know.")
    await ask(reviewed, "what is the wifi password?")

    shown = json.dumps(final_blocks(reviewed), ensure_ascii=False)
    assert "I found no source for this" in shown
    assert "not sure" not in shown
    assert render.ASK_HUMAN_ACTION in action_ids(final_blocks(reviewed))


async def test_a_clean_answer_has_no_warning_and_goes_nowhere(
    reviewed: Candor, fake_llm: FakeOpenAIServer, verdicts: list[dict[str, Any]]
) -> None:
    verdicts.append({"flagged": False, "reasons": [], "confidence": 0.9})
    fake_llm.enqueue("Deploy with `make ship`.")
    await ask(reviewed, "how do we deploy?")

    blocks = final_blocks(reviewed)
    assert "not sure" not in json.dumps(blocks, ensure_ascii=False)
    assert render.ASK_HUMAN_ACTION not in action_ids(blocks)
    assert review_posts(reviewed) == []


async def test_a_thumbs_down_reaches_the_review_channel(
    reviewed: Candor, deps: Deps, fake_llm: FakeOpenAIServer, verdicts: list[dict[str, Any]]
) -> None:
    fake_llm.enqueue("Lunch is at noon.")
    await ask(reviewed, "when is lunch?")
    answer = await last_answer(deps)
    assert review_posts(reviewed) == []

    down = f"{render.FEEDBACK_ACTION}_down"
    await click(reviewed, down, button_value(final_blocks(reviewed), down), user="U7")

    await reviewed.slack.wait_until(lambda: len(review_posts(reviewed)) == 1, what="review post")
    text = json.dumps(blocks_of(review_posts(reviewed)[0].body), ensure_ascii=False)
    assert "👎 on an answer" in text and "<@U7>" in text
    assert "when is lunch?" in text and "Lunch is at noon." in text
    row = await review_of(deps, answer.id)
    assert row is not None and (row.kind, row.raised_by) == ("thumbs_down", "U7")


async def set_experts(candor: Candor, text: str) -> str:
    candor.slack.set_user(ADMIN, is_admin=True)
    before = len(candor.slack.calls_to("response_url"))
    form = ev.slash_command(
        "/candor", text, user_id=ADMIN, channel_id="C1", response_url=candor.slack.response_url()
    )
    status, _ = await candor.send.command(form)
    assert status == 200
    calls = await candor.slack.wait_for("response_url", count=before + 1)
    return str(calls[-1].get("text"))


async def test_ask_a_human_mentions_the_channel_experts_in_the_thread(
    reviewed: Candor, deps: Deps, fake_llm: FakeOpenAIServer, verdicts: list[dict[str, Any]]
) -> None:
    said = await set_experts(reviewed, "experts <#C1|eng> <@UEXP1> <@UEXP2>")
    assert "<@UEXP1>" in said and "<@UEXP2>" in said
    assert "<@UEXP1>" in await set_experts(reviewed, "experts <#C1|eng>")
    async with deps.db.sessions() as session:
        audited = (
            await session.execute(select(AuditRow).where(AuditRow.action == "experts set"))
        ).scalar_one()
    assert audited.after == {"experts": ["UEXP1", "UEXP2"]} and audited.actor_id == ADMIN

    verdicts.append({"flagged": True, "reasons": ["the answer cites no source"]})
    fake_llm.enqueue("Probably port 8080.")
    mention = await ask(reviewed, "which port does the API use?")
    answer = await last_answer(deps)
    await reviewed.slack.wait_until(lambda: len(review_posts(reviewed)) == 1, what="review post")

    told = len(ephemeral_texts(reviewed))
    # The button Slack shows: the answer went out before its row was written, so the
    # button names the answer's event, which finds the row written after it.
    pressed = button_value(final_blocks(reviewed), render.ASK_HUMAN_ACTION)
    assert pressed == f"event:{answer.event_id}"
    await click(reviewed, render.ASK_HUMAN_ACTION, pressed, user="U1")

    def asked() -> list[str]:
        return [
            m.text
            for m in reviewed.slack.messages("C1", thread_ts=mention["ts"])
            if "<@UEXP1>" in m.text
        ]

    await reviewed.slack.wait_until(lambda: bool(asked()), what="experts mentioned")
    assert "<@UEXP2>" in asked()[0] and "<@U1>" in asked()[0]
    await reviewed.slack.wait_until(lambda: len(ephemeral_texts(reviewed)) > told, what="reply")
    assert "asked this channel's experts" in ephemeral_texts(reviewed)[-1]
    # Already in the review channel (flagged): the request is a note under that post.
    notes = [
        c
        for c in reviewed.slack.calls_to("chat.postMessage")
        if c.get("channel") == REVIEW and c.get("thread_ts")
    ]
    assert any("asked for a human" in str(c.get("text")) for c in notes)
    assert len(review_posts(reviewed)) == 1

    assert "no experts" in await set_experts(reviewed, "experts <#C1|eng> none")
    async with deps.db.sessions() as session:
        assert (await session.execute(select(ChannelExpertRow))).first() is None


async def test_ask_a_human_without_experts_passes_it_on_to_reviewers(
    reviewed: Candor, deps: Deps, fake_llm: FakeOpenAIServer, verdicts: list[dict[str, Any]]
) -> None:
    fake_llm.enqueue("Ask facilities.")
    mention = await ask(reviewed, "where is the spare key?")
    answer = await last_answer(deps)

    await click(reviewed, render.ASK_HUMAN_ACTION, str(answer.id), user="U1")

    await reviewed.slack.wait_until(lambda: bool(ephemeral_texts(reviewed)), what="reply")
    assert ephemeral_texts(reviewed)[-1] == "I passed your question on to the reviewers; " + (
        "someone will answer in the thread."
    )
    [post] = review_posts(reviewed)
    assert "Someone asked for a human" in json.dumps(blocks_of(post.body), ensure_ascii=False)
    thread = reviewed.slack.messages("C1", thread_ts=mention["ts"])
    assert not any("<@" in m.text for m in thread)  # nobody mentioned


async def test_mark_resolved_updates_the_stored_status_and_the_message(
    reviewed: Candor, deps: Deps, fake_llm: FakeOpenAIServer, verdicts: list[dict[str, Any]]
) -> None:
    verdicts.append({"flagged": True, "reasons": ["the model was unsure"]})
    fake_llm.enqueue("Maybe Tuesday.")
    await ask(reviewed, "when is the release?")
    answer = await last_answer(deps)
    await reviewed.slack.wait_until(lambda: len(review_posts(reviewed)) == 1, what="review post")
    row = await review_of(deps, answer.id)
    assert row is not None

    # Someone outside the review channel, not an admin, cannot resolve it.
    await click(reviewed, render.REVIEW_RESOLVE_ACTION, str(row.id), user="U5", channel="C1")
    await reviewed.slack.wait_until(lambda: bool(ephemeral_texts(reviewed)), what="refusal")
    assert "Only people in the review channel" in ephemeral_texts(reviewed)[-1]
    assert (await review_of(deps, answer.id)).status == "open"  # type: ignore[union-attr]

    await click(
        reviewed,
        render.REVIEW_RESOLVE_ACTION,
        str(row.id),
        user=REVIEWER,
        channel=REVIEW,
        message_ts=row.review_ts,
    )
    await reviewed.slack.wait_for("chat.update")
    done = await review_of(deps, answer.id)
    assert done is not None and (done.status, done.reviewer_id) == ("resolved", REVIEWER)
    [update] = [c for c in reviewed.slack.calls_to("chat.update") if c.get("channel") == REVIEW]
    shown = json.dumps(blocks_of(update.body), ensure_ascii=False)
    assert f"Resolved by <@{REVIEWER}>" in shown
    assert action_ids(blocks_of(update.body)) == []


async def test_a_correction_reaches_the_thread_and_becomes_cited_knowledge_there_only(
    reviewed: Candor, deps: Deps, fake_llm: FakeOpenAIServer, verdicts: list[dict[str, Any]]
) -> None:
    verdicts.append({"flagged": True, "reasons": ["no source covers 'VPN'"]})
    fake_llm.enqueue("Try vpn.old.example.")
    mention = await ask(reviewed, "What is the VPN hostname?")
    answer = await last_answer(deps)
    await reviewed.slack.wait_until(lambda: len(review_posts(reviewed)) == 1, what="review post")
    row = await review_of(deps, answer.id)
    assert row is not None

    await click(reviewed, render.REVIEW_CORRECT_ACTION, str(row.id), user=REVIEWER, channel=REVIEW)
    [opened] = await reviewed.slack.wait_for("views.open")
    view = opened.get("view")
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == render.CORRECTION_MODAL
    assert view["private_metadata"] == str(row.id)

    correction = "The VPN hostname is vpn.corp.example (use your SSO login)."
    submission = ev.view_submission(
        render.CORRECTION_MODAL,
        {
            render.CORRECTION_BLOCK: {
                render.CORRECTION_INPUT: {"type": "plain_text_input", "value": correction}
            },
            render.KNOWLEDGE_BLOCK: {
                render.KNOWLEDGE_INPUT: {
                    "type": "checkboxes",
                    "selected_options": [{"value": "add"}],
                }
            },
        },
        user_id=REVIEWER,
        private_metadata=view["private_metadata"],
    )
    status, _ = await reviewed.send.action(submission)
    assert status == 200

    def in_thread() -> list[str]:
        return [
            m.text
            for m in reviewed.slack.messages("C1", thread_ts=mention["ts"])
            if "Correction" in m.text
        ]

    await reviewed.slack.wait_until(lambda: bool(in_thread()), what="correction in thread")
    assert "vpn.corp.example" in in_thread()[0] and f"<@{REVIEWER}>" in in_thread()[0]
    await reviewed.slack.wait_until(
        lambda: any(c.get("channel") == REVIEW for c in reviewed.slack.calls_to("chat.update")),
        what="review message updated",
    )
    stored = await review_of(deps, answer.id)
    assert stored is not None
    assert (stored.status, stored.correction, stored.reviewer_id) == (
        "corrected",
        correction,
        REVIEWER,
    )
    assert stored.knowledge_source == f"review:C1/{answer.id}"

    # The next asker in that channel gets it as a numbered, cited source...
    fake_llm.enqueue("It is vpn.corp.example [1].")
    await ask(reviewed, "What's the VPN hostname?")
    assert "vpn.corp.example" in json.dumps(fake_llm.last["messages"])
    assert "Reviewed answer" in json.dumps(final_blocks(reviewed), ensure_ascii=False)

    # ...and nobody asking in another channel does.
    fake_llm.enqueue("I don't know.")
    await ask(reviewed, "What is the VPN hostname?", channel="C2")
    assert "vpn.corp.example" not in json.dumps(fake_llm.last["messages"])


async def test_an_empty_correction_is_refused_in_the_modal(
    reviewed: Candor, deps: Deps, fake_llm: FakeOpenAIServer, verdicts: list[dict[str, Any]]
) -> None:
    verdicts.append({"flagged": True, "reasons": ["x"]})
    fake_llm.enqueue("Hmm.")
    await ask(reviewed, "anything?")
    answer = await last_answer(deps)
    await reviewed.slack.wait_until(lambda: len(review_posts(reviewed)) == 1, what="review post")
    row = await review_of(deps, answer.id)
    assert row is not None
    submission = ev.view_submission(
        render.CORRECTION_MODAL,
        {render.CORRECTION_BLOCK: {render.CORRECTION_INPUT: {"value": "   "}}},
        user_id=REVIEWER,
        private_metadata=str(row.id),
    )
    status, body = await reviewed.send.action(submission)
    assert status == 200
    assert json.loads(body)["response_action"] == "errors"
    assert (await review_of(deps, answer.id)).status == "open"  # type: ignore[union-attr]


async def test_a_channel_review_channel_overrides_the_workspace_one(
    reviewed: Candor, deps: Deps, fake_llm: FakeOpenAIServer, verdicts: list[dict[str, Any]]
) -> None:
    said = await set_experts(reviewed, "review-channel <#CREV2|eng-review> <#C1|eng>")
    assert "CREV2" in said
    assert "review-channel: <#CREV2>" in await set_experts(reviewed, "config show <#C1|eng>")
    async with deps.db.sessions() as session:
        audited = (
            await session.execute(select(AuditRow).where(AuditRow.action == "review-channel"))
        ).scalar_one()
    assert audited.after == {"review_channel": "CREV2"}

    verdicts.append({"flagged": True, "reasons": ["the model was unsure"]})
    fake_llm.enqueue("Perhaps.")
    await ask(reviewed, "is it Friday?")
    await reviewed.slack.wait_until(
        lambda: any(
            c.get("channel") == "CREV2" for c in reviewed.slack.calls_to("chat.postMessage")
        ),
        what="post to the channel's review channel",
    )
    assert review_posts(reviewed) == []  # not the workspace's


async def test_the_confidence_core_flags_an_uncited_answer_over_nothing_and_it_reaches_review(
    reviewed: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    """No seam: the real core scores an answer that cites nothing over an empty retrieval."""
    # The workspace has knowledge, none of it about Django: the retrieval comes back empty.
    # (With no knowledge at all there is nothing to flag; see the next test.)
    await add_doc(deps, "coffee", Scope.workspace())
    fake_llm.enqueue("Django migrations run with manage.py migrate.")
    await ask(reviewed, "how do I migrate Django?")

    answer = await last_answer(deps)
    assert answer.flagged
    blocks = final_blocks(reviewed)
    warning = [b for b in blocks if b.get("block_id") == "candor_warning"]
    assert len(warning) == 1
    assert render.ASK_HUMAN_ACTION in action_ids(blocks)
    await reviewed.slack.wait_until(lambda: len(review_posts(reviewed)) == 1, what="review post")
    row = await review_of(deps, answer.id)
    assert row is not None and row.reasons  # the core's reasons travel with the item
    assert row.reasons[0] in json.dumps(
        blocks_of(review_posts(reviewed)[0].body), ensure_ascii=False
    )


async def test_on_a_fresh_install_a_plain_answer_is_not_flagged_nor_sent_for_review(
    reviewed: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    """An empty knowledge base is "no knowledge base", not "no source covers this"."""
    fake_llm.enqueue("Hi! What can I do for you?", logprob=-0.05)
    await ask(reviewed, "hi")

    answer = await last_answer(deps)
    assert not answer.flagged
    blocks = final_blocks(reviewed)
    assert [b for b in blocks if b.get("block_id") == "candor_warning"] == []
    assert await review_of(deps, answer.id) is None
    assert review_posts(reviewed) == []
