"""Interactivity on answers: the 👍 / 👎 feedback buttons under each answer.

The buttons carry `up:<answer_id>` / `down:<answer_id>`. There is no feedback ledger in
`bot/` yet, so the handler logs the vote (structured, greppable) and thanks the user
ephemerally through the action's `response_url`; when `bot/` grows a
`record_feedback(...)`, this is the one call to add. Handlers keep no rules of their own.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.deps import Deps
from handlers import render

log = logging.getLogger(__name__)

THANKS = "Thanks for the feedback; it helps the team tune Candor."


def register(app: AsyncApp, deps: Deps) -> None:
    """Listen for the feedback buttons rendered by `render.footer_blocks`."""

    @app.action(re.compile(f"^{render.FEEDBACK_ACTION}_(up|down)$"))
    async def on_feedback(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
        vote, _, answer_id = str(action.get("value") or "").partition(":")
        user = (body.get("user") or {}).get("id")
        log.info("feedback vote=%s answer_id=%s user=%s", vote, answer_id, user)
        await respond(text=THANKS, response_type="ephemeral", replace_original=False)
