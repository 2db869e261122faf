"""Helpers shared by test modules."""

from __future__ import annotations

from bot.conversation import Turn
from bot.db import repo
from bot.deps import Deps


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
