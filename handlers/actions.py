"""Interactivity on answers: the 👍 / 👎 feedback buttons under each answer.

The buttons carry `up:<answer>` / `down:<answer>`, the answer as `Answer.ref` names it
(its id, or `event:<event id>` when it was shown before it was stored). The vote is
stored with the answer (one per user; a new click replaces the old) and the user is
thanked ephemerally through the action's `response_url`. A vote on an unknown answer is
only logged. A 👎 also sends the answer to the review channel
(`handlers.review.thumbs_down`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.db import repo
from bot.deps import Deps
from handlers import render, review

log = logging.getLogger(__name__)

THANKS = "Thanks for the feedback; it helps the team tune Candor."


def register(app: AsyncApp, deps: Deps) -> None:
    """Listen for the feedback buttons rendered by `render.footer_blocks`."""

    @app.action(re.compile(f"^{render.FEEDBACK_ACTION}_(up|down)$"))
    async def on_feedback(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        vote, _, ref = review.button_value(body).partition(":")
        user = (body.get("user") or {}).get("id")
        log.info("feedback vote=%s answer=%s user=%s", vote, ref, user)
        answer_id: int | None = None
        if user:
            try:
                async with deps.db.write() as session:
                    answer_id = await repo.answer_id_for(session, ref)
                    if answer_id is not None:
                        await repo.record_feedback(
                            session,
                            answer_id=answer_id,
                            user_id=str(user),
                            vote=vote,
                            when=deps.clock.now(),
                        )
            except Exception:
                log.exception("Could not store the feedback on answer %s", ref)
                await respond(
                    text="I could not save your feedback just now; please try again later.",
                    response_type="ephemeral",
                    replace_original=False,
                )
                return
        await respond(text=THANKS, response_type="ephemeral", replace_original=False)
        if vote == "down" and answer_id is not None and user:
            container = body.get("container") or {}
            await review.thumbs_down(
                deps,
                client,
                answer_id=answer_id,
                user_id=str(user),
                message_ts=container.get("message_ts"),
            )
