"""Repositories: keyword-only functions that take a session and do one thing.

Callers own the transaction (`async with db.sessions.begin() as session:`), so several
repository calls can share one commit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    DEFAULT_KEY,
    AnswerFeedbackRow,
    AnswerRow,
    ChannelSettingsRow,
    ConversationTurnRow,
    ProcessedEventRow,
    ToolPermissionRow,
)
from bot.db.statements import Executor, dialect_of, table, upsert_insert

_EVENTS = table(ProcessedEventRow)
_TURNS = table(ConversationTurnRow)
_ANSWERS = table(AnswerRow)


async def get_channel_row(
    session: AsyncSession, *, workspace_id: str, channel_id: str
) -> ChannelSettingsRow | None:
    result = await session.execute(
        select(ChannelSettingsRow).where(
            ChannelSettingsRow.workspace_id == workspace_id,
            ChannelSettingsRow.channel_id == channel_id,
        )
    )
    return result.scalar_one_or_none()


async def get_settings_rows(
    session: AsyncSession, *, workspace_id: str, channel_id: str
) -> tuple[ChannelSettingsRow | None, ChannelSettingsRow | None]:
    """The workspace-default row and the channel's row (each None if absent), in one query."""
    result = await session.execute(
        _settings_statement(with_tools=False), {"b_ws": workspace_id, "b_ch": channel_id}
    )
    default = channel = None
    for row in result.scalars():
        if row.workspace_id == DEFAULT_KEY and row.channel_id == DEFAULT_KEY:
            default = row
        if row.workspace_id == workspace_id and row.channel_id == channel_id:
            channel = row
    return default, channel


#: `bot.tools.policy.ANY`: a tool rule for every channel / every workspace.
_EVERY_PLACE = "*"


async def get_settings_rows_and_tool_hint(
    session: AsyncSession, *, workspace_id: str, channel_id: str
) -> tuple[ChannelSettingsRow | None, ChannelSettingsRow | None, bool]:
    """`get_settings_rows`, and whether any tool rule allows something in the channel,
    in the same one statement (an `EXISTS` column beside the settings rows).

    False means no tool can be offered there (`bot.tools.policy.is_allowed` needs an
    allow rule of the channel or the workspace), so an answer can skip reading the tool
    rules. True when such a rule exists, or when there is no settings row to carry it.
    """
    result = await session.execute(
        _settings_statement(with_tools=True), {"b_ws": workspace_id, "b_ch": channel_id}
    )
    default = channel = None
    tools_allowed = True
    for row, allowed in result.all():
        tools_allowed = bool(allowed)
        if row.workspace_id == DEFAULT_KEY and row.channel_id == DEFAULT_KEY:
            default = row
        if row.workspace_id == workspace_id and row.channel_id == channel_id:
            channel = row
    return default, channel, tools_allowed


@functools.cache
def _settings_statement(*, with_tools: bool) -> Any:
    """The default row and the channel's (`b_ws`, `b_ch`), with the tools' `EXISTS`."""
    settings = ChannelSettingsRow
    rows = or_(
        and_(settings.workspace_id == DEFAULT_KEY, settings.channel_id == DEFAULT_KEY),
        and_(
            settings.workspace_id == bindparam("b_ws"),
            settings.channel_id == bindparam("b_ch"),
        ),
    )
    if not with_tools:
        return select(settings).where(rows)
    rule = ToolPermissionRow
    any_allowed = (
        exists()
        .where(
            rule.allowed.is_(True),
            rule.workspace_id.in_((bindparam("b_ws"), _EVERY_PLACE)),
            rule.channel_id.in_((bindparam("b_ch"), _EVERY_PLACE)),
        )
        .label("tools_allowed")
    )
    return select(settings, any_allowed).where(rows)


async def get_default_row(
    session: AsyncSession, *, now: datetime | None = None
) -> ChannelSettingsRow:
    """The workspace-default row.

    If someone deleted it by hand, a reader (`now` not given) gets a blank row that is not
    stored, and a writer (`now` given) recreates it, stamped with that time.
    """
    row = await get_channel_row(session, workspace_id=DEFAULT_KEY, channel_id=DEFAULT_KEY)
    if row is None:
        row = ChannelSettingsRow(workspace_id=DEFAULT_KEY, channel_id=DEFAULT_KEY, updated_at=now)
        if now is not None:
            session.add(row)
            await session.flush()
    return row


async def get_or_create_channel_row(
    session: AsyncSession, *, workspace_id: str, channel_id: str, now: datetime
) -> ChannelSettingsRow:
    if channel_id == DEFAULT_KEY:
        return await get_default_row(session, now=now)
    row = await get_channel_row(session, workspace_id=workspace_id, channel_id=channel_id)
    if row is None:
        row = ChannelSettingsRow(workspace_id=workspace_id, channel_id=channel_id, updated_at=now)
        session.add(row)
        await session.flush()
    return row


async def list_channel_rows(session: AsyncSession) -> Sequence[ChannelSettingsRow]:
    result = await session.execute(
        select(ChannelSettingsRow)
        .where(ChannelSettingsRow.channel_id != DEFAULT_KEY)
        .order_by(ChannelSettingsRow.channel_id)
    )
    return result.scalars().all()


#: The status of a claim whose answer is still running (or whose process died).
CLAIMED = "claimed"


async def claim_event(
    session: Executor,
    *,
    event_id: str,
    kind: str,
    now: datetime,
    workspace_id: str | None = None,
    channel_id: str | None = None,
    thread_ts: str | None = None,
    user_id: str | None = None,
) -> bool:
    """Claim `event_id` for processing; False when another delivery already claimed it.

    The primary key makes this atomic across replicas and worker processes: exactly one
    INSERT wins (`ON CONFLICT DO NOTHING`: one statement, no savepoint). Where the message
    was is stored with the claim, so a claim that never finishes can be reported in its
    thread (`stale_claims`, `fail_claim`).
    """
    won = await session.execute(
        _claim_statement(dialect_of(session)),
        {
            "event_id": event_id,
            "kind": kind,
            "status": CLAIMED,
            "received_at": now,
            "updated_at": now,
            "workspace_id": workspace_id,
            "channel_id": channel_id,
            "thread_ts": thread_ts,
            "user_id": user_id,
        },
    )
    return won.first() is not None


@functools.cache
def _claim_statement(dialect: str) -> Any:
    return (
        upsert_insert(dialect, _EVENTS)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(_EVENTS.c.event_id)
    )


async def mark_event(session: Executor, *, event_id: str, status: str, now: datetime) -> None:
    """Record how the answer to `event_id` ended (whatever its status was)."""
    await session.execute(
        _MARK_EVENT, {"b_event_id": event_id, "status": status, "updated_at": now}
    )


_MARK_EVENT = update(_EVENTS).where(_EVENTS.c.event_id == bindparam("b_event_id"))


async def stale_claims(
    session: AsyncSession, *, before: datetime, limit: int = 100
) -> list[ProcessedEventRow]:
    """Claims still `claimed` that were made before `before`, oldest first."""
    result = await session.execute(
        select(ProcessedEventRow)
        .where(ProcessedEventRow.status == CLAIMED, ProcessedEventRow.received_at < before)
        .order_by(ProcessedEventRow.received_at)
        .limit(limit)
    )
    return list(result.scalars().all())


async def fail_claim(session: AsyncSession, *, event_id: str, now: datetime) -> bool:
    """Mark a still-`claimed` claim `failed`; True only for the one caller that did.

    The `WHERE status = 'claimed'` makes this the guard between replicas (and between a
    sweep and an answer finishing late): of several callers, exactly one sees a row change.
    """
    result = await session.execute(
        update(ProcessedEventRow)
        .where(ProcessedEventRow.event_id == event_id, ProcessedEventRow.status == CLAIMED)
        .values(status="failed", updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


async def delete_events_before(session: AsyncSession, *, before: datetime) -> int:
    result = await session.execute(
        delete(ProcessedEventRow).where(ProcessedEventRow.received_at < before)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def load_thread(
    session: AsyncSession, *, thread_key: str, limit: int = 200
) -> list[ConversationTurnRow]:
    """The newest `limit` turns of a thread, oldest first."""
    result = await session.execute(_thread_statement(limit), {"b_thread": thread_key})
    return list(reversed(result.scalars().all()))


@functools.cache
def _thread_statement(limit: int) -> Any:
    turn = ConversationTurnRow
    return (
        select(turn)
        .where(turn.thread_key == bindparam("b_thread"))
        .order_by(turn.id.desc())
        .limit(limit)
    )


async def thread_exists(session: Executor, *, thread_key: str) -> bool:
    result = await session.execute(_THREAD_EXISTS, {"b_thread": thread_key})
    return result.first() is not None


_THREAD_EXISTS = select(_TURNS.c.id).where(_TURNS.c.thread_key == bindparam("b_thread")).limit(1)


async def add_turn(
    session: AsyncSession,
    *,
    workspace_id: str,
    channel_id: str,
    thread_key: str,
    role: str,
    text: str,
    token_count: int,
    user_id: str | None = None,
    model: str | None = None,
    event_id: str | None = None,
    now: datetime,
) -> ConversationTurnRow:
    row = ConversationTurnRow(
        created_at=now,
        workspace_id=workspace_id,
        channel_id=channel_id,
        thread_key=thread_key,
        role=role,
        text=text,
        token_count=token_count,
        user_id=user_id,
        model=model,
        event_id=event_id,
    )
    session.add(row)
    await session.flush()
    return row


#: How a button names an answer shown before its row was written (`Answer.ref`).
EVENT_REF = "event:"


async def answer_id_for(session: AsyncSession, ref: str) -> int | None:
    """The answer a button names: `17` (the row's id), or `event:<event id>` for an
    answer Slack showed before its row was written (the row of that event, if it was
    written). None for anything else."""
    if ref.isdigit():
        return int(ref)
    event = ref.removeprefix(EVENT_REF)
    if event == ref or not event:
        return None
    found = await session.scalar(select(func.max(AnswerRow.id)).where(AnswerRow.event_id == event))
    return int(found) if found is not None else None


async def record_feedback(
    session: AsyncSession, *, answer_id: int, user_id: str, vote: str, when: datetime
) -> bool:
    """Store `user_id`'s vote ("up" or "down") on an answer; False if the answer is unknown."""
    if vote not in ("up", "down") or await session.get(AnswerRow, answer_id) is None:
        return False
    row = await session.get(AnswerFeedbackRow, (answer_id, user_id))
    if row is None:
        session.add(
            AnswerFeedbackRow(answer_id=answer_id, user_id=user_id, vote=vote, created_at=when)
        )
    else:
        row.vote = vote
        row.created_at = when
    await session.flush()
    return True


async def record_answer(session: AsyncSession, *, now: datetime, **fields: Any) -> AnswerRow:
    row = AnswerRow(created_at=now, **fields)
    session.add(row)
    await session.flush()
    return row


async def store_exchange(
    session: Executor,
    *,
    now: datetime,
    turns: Sequence[dict[str, Any]],
    answer: dict[str, Any],
) -> int:
    """Store a question and its answer: the thread's `turns` (none for a turn that is not
    remembered) and the answer row; returns the answer's id. Prebuilt Core INSERTs, no
    ORM unit of work: this runs for every answer. The turns are one statement (one
    `executemany` with the same columns for each row)."""
    if turns:
        await session.execute(_INSERT_TURNS, [{"created_at": now, **turn} for turn in turns])
    new_id = await session.execute(_INSERT_ANSWER, {"created_at": now, **answer})
    return int(new_id.scalar_one())


_INSERT_TURNS = insert(_TURNS)
_INSERT_ANSWER = insert(_ANSWERS).returning(_ANSWERS.c.id)
