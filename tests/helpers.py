"""Helpers shared by test modules."""

from __future__ import annotations

from bot.conversation import Turn


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
