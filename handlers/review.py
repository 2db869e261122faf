"""The review loop on Slack: flagged and 👎 answers to reviewers, Ask a human, corrections.

- `answer_delivered` (called by `handlers.events` once an answer is shown): a flagged
  answer opens a review item and is posted to the channel's review channel
  (`/candor review-channel`, else `SLACK_REVIEW_CHANNEL`) with question, answer, reasons,
  scores and a permalink.
- `thumbs_down` (called by `handlers.actions` after a 👎 is stored): the same.
- **Ask a human** (`render.ASK_HUMAN_ACTION`): mentions the channel's experts in the
  thread (`/candor experts`), posts to the review channel, and tells the asker it was
  passed on.
- **Mark resolved** / **Write a correction** in the review channel: reviewers are the
  people in the review channel (the buttons are there) and Candor admins. A correction
  (a modal) is stored, posted in the original thread and, if the reviewer ticks the box,
  added to that channel's knowledge scope (private if the channel is) as a Q&A document.

An answer has one review item however many times it is raised; a later 👎 or Ask a human
is a reply under the reviewers' message. The rules live in `bot.review`; this module
parses, calls it and renders (`handlers.render`). Nothing here raises to the answer path.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.admin import audit
from bot.admin import service as admin_mod
from bot.conversation import Answer
from bot.db import repo
from bot.db.models import AnswerRow
from bot.deps import Deps
from bot.kb import ScopedKnowledge
from bot.review import experts as experts_mod
from bot.review import items
from bot.review.items import ReviewItem, ReviewNotFound
from handlers import render
from handlers.directory import is_private_channel, user_lookup

log = logging.getLogger(__name__)

PASSED_ON = "I passed your question on to the reviewers; someone will answer in the thread."
NO_ONE = (
    "No experts or review channel are set up for this channel yet, so I could not pass this "
    "on; ask a Candor admin to run `/candor experts` or `/candor review-channel`."
)
NOT_REVIEWER = "Only people in the review channel and Candor admins can review answers."
GONE = "I could not find that answer any more; nothing was changed."
FAILED = "Something went wrong on Candor's side; nothing was changed. Please try again."


def register(app: AsyncApp, deps: Deps) -> None:
    """Listen for Ask a human, Mark resolved, Write a correction and the correction modal."""

    @app.action(render.ASK_HUMAN_ACTION)
    async def on_ask_human(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        ref = button_value(body)
        user = str((body.get("user") or {}).get("id") or "")
        if not ref or not user:
            return
        try:
            text = await ask_human(
                deps, client, ref=ref, user_id=user, message_ts=_message_ts(body)
            )
        except Exception:
            log.exception("Ask a human failed for answer %s", ref)
            text = FAILED
        await respond(text=text, response_type="ephemeral", replace_original=False)

    async def as_reviewer(
        body: dict[str, Any],
        respond: AsyncRespond,
        client: AsyncWebClient,
        what: str,
        act: Callable[[int, str, ReviewItem], Awaitable[None]],
    ) -> None:
        """Load the review item, check the clicker may review it, then `act` on it."""
        review_id = _action_value(body)
        user = str((body.get("user") or {}).get("id") or "")
        if review_id is None or not user:
            return
        try:
            async with deps.db.sessions() as session:
                item = await items.load(session, review_id=review_id)
            if not await _may_review(deps, client, user, item, _channel(body)):
                await respond(text=NOT_REVIEWER, response_type="ephemeral", replace_original=False)
                return
            await act(review_id, user, item)
        except ReviewNotFound:
            await respond(text=GONE, response_type="ephemeral", replace_original=False)
        except Exception:
            log.exception("%s of review %s failed", what, review_id)
            await respond(text=FAILED, response_type="ephemeral", replace_original=False)

    @app.action(render.REVIEW_RESOLVE_ACTION)
    async def on_resolve(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()

        async def resolve(review_id: int, user: str, _item: ReviewItem) -> None:
            async with deps.db.write() as session:
                item = await items.resolve(
                    session, review_id=review_id, reviewer_id=user, now=deps.clock.now()
                )
            await _refresh(client, item)

        await as_reviewer(body, respond, client, "Resolving", resolve)

    @app.action(render.REVIEW_CORRECT_ACTION)
    async def on_correct(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()

        async def open_modal(_review_id: int, _user: str, item: ReviewItem) -> None:
            await client.views_open(
                trigger_id=str(body.get("trigger_id") or ""), view=render.correction_modal(item)
            )

        await as_reviewer(body, respond, client, "Opening the correction modal", open_modal)

    @app.view(render.CORRECTION_MODAL)
    async def on_correction(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        user = str((body.get("user") or {}).get("id") or "")
        state = (view.get("state") or {}).get("values") or {}
        text = str(
            ((state.get(render.CORRECTION_BLOCK) or {}).get(render.CORRECTION_INPUT) or {}).get(
                "value"
            )
            or ""
        )
        chosen = ((state.get(render.KNOWLEDGE_BLOCK) or {}).get(render.KNOWLEDGE_INPUT) or {}).get(
            "selected_options"
        ) or []
        learn = any(option.get("value") == "add" for option in chosen)
        try:
            text = items.check_correction(text)
            review_id = int(str(view.get("private_metadata") or ""))
        except ValueError as exc:
            message = str(exc) if text.strip() else "Write the correct answer before saving."
            await ack(response_action="errors", errors={render.CORRECTION_BLOCK: message})
            return
        await ack()
        try:
            await save_correction(
                deps, client, review_id=review_id, reviewer_id=user, text=text, learn=learn
            )
        except Exception:
            log.exception("Saving the correction of review %s failed", review_id)
            await _dm(client, user, "I could not save your correction; please try again.")


# --- raising items ------------------------------------------------------------------------


async def answer_delivered(
    deps: Deps, client: AsyncWebClient, answer: Answer, *, message_ts: str | None
) -> None:
    """After an answer is shown: a flagged one goes to the review channel. Never raises."""
    if not answer.flagged or answer.answer_id is None:
        return
    try:
        async with deps.db.write() as session:
            item = await items.raise_review(
                session,
                answer_id=answer.answer_id,
                kind=items.KIND_FLAGGED,
                now=deps.clock.now(),
                reasons=answer.reasons,
                confidence=answer.confidence,
            )
        if item is not None:
            await _post(deps, client, item, message_ts=message_ts, note=None)
    except Exception:
        log.exception("Could not send flagged answer %s for review", answer.answer_id)


async def thumbs_down(
    deps: Deps, client: AsyncWebClient, *, answer_id: int, user_id: str, message_ts: str | None
) -> None:
    """A 👎 was stored: the answer goes to the review channel. Never raises."""
    try:
        async with deps.db.write() as session:
            item = await items.raise_review(
                session,
                answer_id=answer_id,
                kind=items.KIND_THUMBS_DOWN,
                now=deps.clock.now(),
                raised_by=user_id,
            )
        if item is not None:
            await _post(deps, client, item, message_ts=message_ts, note=f"<@{user_id}> voted 👎.")
    except Exception:
        log.exception("Could not send the 👎 on answer %s for review", answer_id)


async def ask_human(
    deps: Deps, client: AsyncWebClient, *, ref: str, user_id: str, message_ts: str | None
) -> str:
    """Mention the channel's experts in the thread and post to reviewers; the asker's reply.
    `ref`: the answer, as its button names it (`repo.answer_id_for`)."""
    async with deps.db.write() as session:
        answer_id = await repo.answer_id_for(session, ref)
        answer = await session.get(AnswerRow, answer_id) if answer_id is not None else None
        if answer is None:
            return GONE
        item = await items.raise_review(
            session,
            answer_id=answer.id,
            kind=items.KIND_ASK_HUMAN,
            now=deps.clock.now(),
            raised_by=user_id,
        )
        names = await experts_mod.list_experts(
            session, workspace_id=answer.workspace_id, channel_id=answer.channel_id
        )
    assert item is not None
    posted = await _post(
        deps, client, item, message_ts=message_ts, note=f"<@{user_id}> asked for a human."
    )
    if names:
        mentions = " ".join(f"<@{name}>" for name in names)
        await client.chat_postMessage(
            channel=item.channel_id,
            thread_ts=item.thread_ts,
            text=f"🙋 <@{user_id}> would like a person to check this answer: {mentions}, "
            "could one of you take a look?",
        )
        return "I asked this channel's experts in the thread" + (
            " and passed it on to the reviewers." if posted else "."
        )
    return PASSED_ON if posted else NO_ONE


async def _post(
    deps: Deps,
    client: AsyncWebClient,
    item: ReviewItem,
    *,
    message_ts: str | None,
    note: str | None,
) -> bool:
    """Post a new item to the review channel, or `note` under it when already posted.

    Returns whether reviewers have it; False when no review channel is set or Slack refused.
    """
    if item.review_ts and item.review_channel:
        if note and not item.created:
            await client.chat_postMessage(
                channel=item.review_channel, thread_ts=item.review_ts, text=note
            )
        return True
    settings = await deps.manager.channel_settings(item.workspace_id, item.channel_id)
    channel = settings.review_channel
    if not channel:
        log.info(
            "No review channel for %s; answer %s is not posted.", item.channel_id, item.answer_id
        )
        return False
    permalink = await _permalink(client, item.channel_id, message_ts or item.thread_ts)
    try:
        response = await client.chat_postMessage(
            channel=channel,
            text=render.review_text(item),
            blocks=render.review_blocks(item, permalink),
            unfurl_links=False,
            unfurl_media=False,
        )
    except Exception:
        log.warning("Could not post answer %s to review channel %s", item.answer_id, channel)
        return False
    async with deps.db.write() as session:
        await items.set_posted(
            session,
            review_id=item.review_id,
            channel=channel,
            ts=str(response["ts"]),
            now=deps.clock.now(),
        )
    return True


async def _permalink(client: AsyncWebClient, channel: str, ts: str) -> str | None:
    try:
        response = await client.chat_getPermalink(channel=channel, message_ts=ts)
    except Exception:
        log.info("No permalink for %s/%s", channel, ts)
        return None
    link = response.get("permalink")
    return str(link) if link else None


# --- reviewing ----------------------------------------------------------------------------


async def save_correction(
    deps: Deps,
    client: AsyncWebClient,
    *,
    review_id: int,
    reviewer_id: str,
    text: str,
    learn: bool,
) -> ReviewItem:
    """Store the correction, add it to the channel's knowledge if asked, post it in the
    original thread and update the reviewers' message."""
    async with deps.db.sessions() as session:
        item = await items.load(session, review_id=review_id)
    source: str | None = None
    if learn:
        source = await _learn(deps, client, item, text)
    async with deps.db.write() as session:
        item = await items.correct(
            session,
            review_id=review_id,
            reviewer_id=reviewer_id,
            text=text,
            now=deps.clock.now(),
            knowledge_source=source,
        )
        if source is not None:
            await audit.record(
                session,
                workspace_id=item.workspace_id,
                actor_id=reviewer_id,
                action="review correction learned",
                target=item.channel_id,
                before=None,
                after={"source": source, "answer_id": item.answer_id},
                when=deps.clock.now(),
            )
    await client.chat_postMessage(
        channel=item.channel_id,
        thread_ts=item.thread_ts,
        text=render.correction_text(reviewer_id, text, learned=source is not None),
        unfurl_links=False,
    )
    if learn and source is None:
        await _dm(
            client,
            reviewer_id,
            "Your correction was posted in the thread, but I could not add it to the "
            "channel's knowledge just now.",
        )
    await _refresh(client, item)
    return item


async def _learn(deps: Deps, client: AsyncWebClient, item: ReviewItem, text: str) -> str | None:
    """Add the correction to the answer's channel scope; its source id, or None."""
    knowledge = deps.knowledge
    if not isinstance(knowledge, ScopedKnowledge):
        return None
    try:
        info = (await client.conversations_info(channel=item.channel_id)).get("channel") or {}
        private = is_private_channel(info)
    except Exception:
        private = True  # when Slack cannot say, keep it from wider eyes
    permalink = await _permalink(client, item.channel_id, item.thread_ts)
    document = items.correction_document(item, text, private=private, link=permalink or "")
    try:
        await knowledge.kb.add_document(document)
    except Exception:
        log.exception("Could not add the correction of answer %s to knowledge", item.answer_id)
        return None
    return document.source


async def _refresh(client: AsyncWebClient, item: ReviewItem) -> None:
    """Show the item's new state on the reviewers' message (no buttons once it is done)."""
    if not item.review_channel or not item.review_ts:
        return
    try:
        await client.chat_update(
            channel=item.review_channel,
            ts=item.review_ts,
            text=render.review_text(item),
            blocks=render.review_blocks(item, None),
        )
    except Exception:
        log.warning("Could not update review message of answer %s", item.answer_id)


async def _may_review(
    deps: Deps, client: AsyncWebClient, user_id: str, item: ReviewItem, channel: str | None
) -> bool:
    """People in the review channel (the buttons are only there) and Candor admins."""
    if channel and channel == item.review_channel:
        return True
    return await admin_mod.for_deps(deps).is_admin(
        user_id, user_lookup(client), team_id=item.workspace_id
    )


async def _dm(client: AsyncWebClient, user_id: str, text: str) -> None:
    try:
        await client.chat_postMessage(channel=user_id, text=text)
    except Exception:
        log.warning("Could not tell %s about their review", user_id)


def button_value(body: dict[str, Any]) -> str:
    """The pressed button's value ("" when there is none)."""
    return str(((body.get("actions") or [{}])[0]).get("value") or "")


def _action_value(body: dict[str, Any]) -> int | None:
    value = button_value(body)
    return int(value) if value.isdigit() else None


def _message_ts(body: dict[str, Any]) -> str | None:
    ts = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts")
    return str(ts) if ts else None


def _channel(body: dict[str, Any]) -> str | None:
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    return str(channel) if channel else None
