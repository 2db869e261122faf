"""The user's recent threads with Candor (Home tab): from the answers it gave them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from bot.db.engine import Database
from bot.db.models import AnswerRow

#: How many threads the Home tab lists.
RECENT_LIMIT = 5
#: Answers read to find them (several answers of one thread count once).
_SCAN = 200
_SLACK_TS = re.compile(r"^\d{9,11}\.\d{6}$")


@dataclass(frozen=True)
class RecentThread:
    """A thread in which Candor answered the user, newest first."""

    channel_id: str
    thread_ts: str
    last_answer: str
    answered_at: datetime


async def recent_threads(
    db: Database, *, workspace_id: str, user_id: str, limit: int = RECENT_LIMIT
) -> list[RecentThread]:
    """The last `limit` Slack threads in which Candor answered `user_id`.

    Only real Slack threads (a message timestamp, not a Home-tab question) are listed;
    the surface links each to its permalink.
    """
    async with db.sessions() as session:
        rows = (
            await session.execute(
                select(
                    AnswerRow.thread_key, AnswerRow.channel_id, AnswerRow.text, AnswerRow.created_at
                )
                .where(AnswerRow.user_id == user_id, AnswerRow.workspace_id == workspace_id)
                .order_by(AnswerRow.created_at.desc(), AnswerRow.id.desc())
                .limit(_SCAN)
            )
        ).all()
    seen: set[str] = set()
    threads: list[RecentThread] = []
    for thread_key, channel_id, text, created_at in rows:
        thread_ts = str(thread_key).rsplit(":", 1)[-1]
        if thread_key in seen or not _SLACK_TS.match(thread_ts):
            continue
        seen.add(thread_key)
        threads.append(RecentThread(str(channel_id), thread_ts, str(text), created_at))
        if len(threads) >= limit:
            break
    return threads
