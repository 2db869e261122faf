"""Slack messages as a task's material, and when a catch-up starts.

Each message becomes a `RetrievedHit` numbered from 1, titled with its author and time,
linked to its permalink: the conversation manager puts them between `<reference_data>`
tags (data, never instructions; tag-like text inside is defused) and the answer cites
them as [n], which the surface renders as links to the messages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from bot.errors import CandorError
from bot.ports import RetrievedHit

#: Where the material comes from (`RetrievedHit.source`).
SOURCE = "slack-message"
#: A catch-up with no `since` covers this much.
DEFAULT_SINCE = timedelta(hours=24)
#: The furthest back a catch-up goes.
MAX_SINCE = timedelta(days=31)
_RELATIVE = re.compile(r"^(\d{1,4})\s*(m|min|mins|h|hr|hrs|hours?|d|days?|w|weeks?)$", re.I)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SINCE_HELP = (
    "Say since when as `2h`, `3d`, `1w`, `yesterday` or a date such as `2026-11-20` "
    "(the default is the last 24 hours)."
)


class InvalidSince(CandorError):
    """A `since` Candor cannot read; the sentence says what it accepts."""

    def __init__(self, raw: str) -> None:
        message = f"I can't read `{raw}` as a time. {SINCE_HELP}"
        super().__init__(message, user_message=message)


@dataclass(frozen=True)
class Post:
    """One Slack message as the model sees it."""

    ts: str
    author: str
    text: str
    link: str

    @property
    def when(self) -> datetime:
        return datetime.fromtimestamp(float(self.ts), UTC)


def as_material(posts: Sequence[Post], *, first: int = 1) -> tuple[RetrievedHit, ...]:
    """The posts numbered from `first`, as reference data for `Turn.material`."""
    return tuple(
        RetrievedHit(
            index=first + n,
            text=post.text,
            title=f"{post.author}, {post.when:%Y-%m-%d %H:%M} UTC",
            link=post.link,
            source=SOURCE,
            scope="",
            score=1.0,
        )
        for n, post in enumerate(posts)
    )


def parse_since(raw: str | None, *, now: datetime) -> datetime:
    """When a catch-up starts: `2h`, `30m`, `3d`, `1w`, `yesterday`, `today`, an ISO date
    or date-time (UTC unless it says otherwise); None is the last 24 hours. Never more
    than `MAX_SINCE` back, never in the future."""
    now = now.astimezone(UTC)
    if raw is None or not raw.strip():
        return now - DEFAULT_SINCE
    text = raw.strip().lower()
    start: datetime
    if text == "yesterday":
        start = datetime.combine(now.date() - timedelta(days=1), time(), UTC)
    elif text == "today":
        start = datetime.combine(now.date(), time(), UTC)
    elif match := _RELATIVE.match(text):
        unit = _UNITS[match.group(2)[0].lower()]
        start = now - timedelta(**{unit: int(match.group(1))})
    else:
        try:
            parsed = datetime.fromisoformat(raw.strip())
        except ValueError:
            try:
                parsed = datetime.combine(date.fromisoformat(raw.strip()), time())
            except ValueError:
                raise InvalidSince(raw) from None
        start = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if start > now:
        raise InvalidSince(raw)
    return max(start.astimezone(UTC), now - MAX_SINCE)
