"""Helpers shared by test modules."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bot.conversation import Turn
from bot.db import repo
from bot.deps import Deps

if TYPE_CHECKING:
    from tests.handlers.conftest import Candor


def make_turn(text: str = "How do I deploy?", **kw: object) -> Turn:
    base: dict[str, object] = {
        "workspace_id": "T1",
        "channel_id": "C1",
        "thread_ts": "1700000000.000100",
        "user_id": "U1",
        "text": text,
        "event_id": None,
        "user_name": "ada",
        "channel_name": "#eng",
    }
    base.update(kw)
    return Turn(**base)  # type: ignore[arg-type]


async def seed_thread(deps: Deps, texts: list[str]) -> None:
    """Stored history for `make_turn()`'s thread: `texts`, from the user and Candor in turn."""
    async with deps.db.sessions.begin() as session:
        for i, text in enumerate(texts):
            await repo.add_turn(
                session,
                workspace_id="T1",
                channel_id="C1",
                thread_key=make_turn().thread_key,
                role="user" if i % 2 == 0 else "assistant",
                text=text,
                token_count=0,
                now=deps.clock.now(),
            )


def blocks_of(call_body: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = call_body.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else list(blocks)


def final_blocks(candor: Candor, channel: str = "C1") -> list[dict[str, Any]]:
    """The blocks of the answer's last message, as sent to Slack (stopStream or postMessage)."""
    for call in reversed(candor.slack.calls):
        if (
            call.method in ("chat.stopStream", "chat.postMessage")
            and call.get("channel") == channel
        ):
            blocks = blocks_of(call.body)
            if blocks:
                return blocks
    raise AssertionError("no answer with blocks was sent")


def button_value(blocks: list[dict[str, Any]], action_id: str) -> str:
    """The value of the button `action_id` in `blocks`: what a click sends back."""
    [value] = [
        str(element.get("value"))
        for block in blocks
        if block.get("type") == "actions"
        for element in block.get("elements", [])
        if element.get("action_id") == action_id
    ]
    return value
