"""Approved answers as OpenAI chat fine-tuning examples (`candor export finetune`).

An answer is approved when a reviewer corrected it (the correction replaces the answer)
or when it has a 👍 and no 👎. Each example is one JSON object per line:

    {"messages": [{"role": "system", ...}, ...history..., {"role": "user", ...},
                  {"role": "assistant", ...}]}

- the system message is the channel's template as it applies now, filled in for the
  answer's date, model, channel and user (IDs: names are not stored);
- the history is the thread's earlier turns as stored in `conversation_turns` (what the
  model was sent, before trimming to its context window);
- the retrieved sources are not included: their text is not stored with the answer.

Scopes are respected: `channel` keeps one channel, and an answer from a private channel
or a DM (or a channel whose privacy cannot be checked) is left out unless
`include_private`; `is_private` is handed in by the caller (the CLI asks Slack).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import channels
from bot.db.models import AnswerFeedbackRow, AnswerRow, ConversationTurnRow
from bot.db.review_models import REVIEW_CORRECTED, AnswerReviewRow
from bot.settings import Settings

IsPrivate = Callable[[str], Awaitable[bool]]


@dataclass
class ExportResult:
    """The examples, and how many approved answers were left out and why."""

    examples: list[dict[str, Any]] = field(default_factory=list)
    corrected: int = 0
    approved: int = 0
    skipped_private: int = 0
    skipped_no_question: int = 0


async def finetune_examples(
    session: AsyncSession,
    settings: Settings,
    *,
    is_private: IsPrivate,
    since: datetime | None = None,
    channel: str | None = None,
    include_private: bool = False,
) -> ExportResult:
    """Every approved answer (see the module docstring) as one fine-tuning example."""
    votes: dict[int, set[str]] = {}
    for answer_id, vote in (
        await session.execute(select(AnswerFeedbackRow.answer_id, AnswerFeedbackRow.vote))
    ).all():
        votes.setdefault(int(answer_id), set()).add(str(vote))
    corrections = {
        int(answer_id): str(text)
        for answer_id, text in (
            await session.execute(
                select(AnswerReviewRow.answer_id, AnswerReviewRow.correction).where(
                    AnswerReviewRow.status == REVIEW_CORRECTED
                )
            )
        ).all()
        if text
    }
    wanted = set(corrections) | {a for a, v in votes.items() if v == {"up"}}
    result = ExportResult()
    if not wanted:
        return result
    query = select(AnswerRow).where(AnswerRow.id.in_(wanted)).order_by(AnswerRow.id)
    if since is not None:
        query = query.where(AnswerRow.created_at >= since)
    if channel:
        query = query.where(AnswerRow.channel_id == channel)
    privacy: dict[str, bool] = {}
    for answer in (await session.execute(query)).scalars().all():
        if answer.channel_id not in privacy:
            privacy[answer.channel_id] = await _private(is_private, answer.channel_id)
        if privacy[answer.channel_id] and not include_private:
            result.skipped_private += 1
            continue
        example = await _example(session, settings, answer, corrections.get(answer.id))
        if example is None:
            result.skipped_no_question += 1
            continue
        result.examples.append(example)
        if answer.id in corrections:
            result.corrected += 1
        else:
            result.approved += 1
    return result


async def _private(is_private: IsPrivate, channel_id: str) -> bool:
    """Whether to treat the channel as private; when it cannot be told, it is."""
    if channel_id.startswith("D"):
        return True
    try:
        return await is_private(channel_id)
    except Exception:
        return True


async def _example(
    session: AsyncSession, settings: Settings, answer: AnswerRow, correction: str | None
) -> dict[str, Any] | None:
    turns = (
        (
            await session.execute(
                select(ConversationTurnRow)
                .where(ConversationTurnRow.thread_key == answer.thread_key)
                .order_by(ConversationTurnRow.id)
            )
        )
        .scalars()
        .all()
    )
    question_at = next(
        (
            i
            for i, t in enumerate(turns)
            if t.role == "user" and answer.event_id is not None and t.event_id == answer.event_id
        ),
        None,
    )
    if question_at is None:
        return None
    eff = await channels.load_effective(
        session, settings, workspace_id=answer.workspace_id, channel_id=answer.channel_id
    )
    system = channels.render_system_message(
        eff.system_message,
        **channels.template_values(
            now=answer.created_at,
            channel=answer.channel_id,
            user=answer.user_id,
            workspace=answer.workspace_id,
            model=answer.model,
        ),
    )
    messages: list[dict[str, str]] = [{"role": "system", "content": system}]
    for turn in turns[:question_at]:
        role = turn.role if turn.role in ("user", "assistant") else "user"
        messages.append({"role": role, "content": turn.text})
    messages.append({"role": "user", "content": turns[question_at].text})
    messages.append({"role": "assistant", "content": correction or answer.text})
    return {"messages": messages}
