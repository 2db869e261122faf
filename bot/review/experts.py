"""Each channel's experts: the people **Ask a human** mentions in the thread.

Set with `/candor experts #channel @a @b`, cleared with `/candor experts #channel none`;
every change writes an audit row in the same transaction (`bot.admin.audit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.admin import audit
from bot.db.review_models import ChannelExpertRow

#: Most experts one channel may list (a mention of more is a broadcast, not a question).
MAX_EXPERTS = 10


async def list_experts(session: AsyncSession, *, workspace_id: str, channel_id: str) -> list[str]:
    """The channel's experts' user IDs (by when they were added, then by ID)."""
    result = await session.execute(
        select(ChannelExpertRow.user_id)
        .where(
            ChannelExpertRow.workspace_id == workspace_id,
            ChannelExpertRow.channel_id == channel_id,
        )
        .order_by(ChannelExpertRow.added_at, ChannelExpertRow.user_id)
    )
    return list(result.scalars().all())


async def set_experts(
    session: AsyncSession,
    *,
    workspace_id: str,
    channel_id: str,
    user_ids: Sequence[str],
    actor_id: str,
    now: datetime,
) -> tuple[list[str], list[str]]:
    """Replace the channel's experts with `user_ids` (empty clears them); audited.

    Returns (before, after). Nothing is written, audit row included, when nothing changes.
    """
    after = list(dict.fromkeys(user_ids))
    if len(after) > MAX_EXPERTS:
        raise ValueError(f"A channel can have at most {MAX_EXPERTS} experts.")
    before = await list_experts(session, workspace_id=workspace_id, channel_id=channel_id)
    if sorted(before) == sorted(after):
        return before, before
    await session.execute(
        delete(ChannelExpertRow).where(
            ChannelExpertRow.workspace_id == workspace_id,
            ChannelExpertRow.channel_id == channel_id,
        )
    )
    for user_id in after:
        session.add(
            ChannelExpertRow(
                workspace_id=workspace_id,
                channel_id=channel_id,
                user_id=user_id,
                added_by=actor_id,
                added_at=now,
            )
        )
    await session.flush()
    await audit.record(
        session,
        workspace_id=workspace_id,
        actor_id=actor_id,
        action="experts clear" if not after else "experts set",
        target=channel_id,
        before={"experts": before},
        after={"experts": after},
        when=now,
    )
    return before, after
