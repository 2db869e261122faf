"""The review loop through Candor's real Slack app: signed events, clicks and modals.

`candor` and `slack` are the Slack-surface fixtures of `tests/handlers/conftest.py`.
`verdicts` is the one test seam: it sets the confidence fields (`flagged`, `reasons`,
`no_answer`, `confidence`) of the next answers as the confidence core would, after the
real manager produced them, so these tests do not depend on how the core scores.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.conversation import Answer, Turn
from bot.db.models import AnswerRow
from bot.db.review_models import AnswerReviewRow
from bot.deps import Deps
from bot.llm import DeltaCallback
from tests.fakes import slack_events as ev
from tests.handlers.conftest import Candor, candor, slack  # noqa: F401  (fixtures)
from tests.helpers import blocks_of as blocks_of

REVIEW = "CREVIEW01"
REVIEWER = "UREVIEW01"


@pytest.fixture
def verdicts(deps: Deps) -> list[dict[str, Any]]:
    """Confidence fields for the next answers, in order (answers after that are clean)."""
    queue: list[dict[str, Any]] = []
    real = deps.manager.reply

    async def reply(turn: Turn, on_delta: DeltaCallback | None = None, **kw: Any) -> Answer:
        verdict = queue.pop(0) if queue else {"flagged": False, "reasons": []}

        def judged(answer: Answer) -> Answer:
            for name, value in verdict.items():
                setattr(answer, name, value)
            return answer

        deliver = kw.get("deliver")
        if deliver is not None:  # Slack is shown the answer before reply returns it

            async def deliver_judged(answer: Answer) -> None:
                await deliver(judged(answer))

            kw["deliver"] = deliver_judged
        return judged(await real(turn, on_delta, **kw))

    deps.manager.reply = reply  # type: ignore[method-assign]
    return queue


@pytest.fixture
async def reviewed(candor: Candor, deps: Deps) -> AsyncIterator[Candor]:  # noqa: F811
    """Candor with a workspace review channel."""
    deps.settings.slack.review_channel = REVIEW
    yield candor


async def ask(candor: Candor, text: str, *, channel: str = "C1") -> dict[str, Any]:  # noqa: F811
    """Mention Candor with `text` in `channel` and wait for the answer; the mention event."""
    mention = ev.app_mention(f"<@UBOT> {text}", channel=channel)
    status, _ = await candor.send.event(mention)
    assert status == 200
    await candor.idle()
    return mention


async def click(
    candor: Candor,  # noqa: F811
    action_id: str,
    value: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    message_ts: str | None = None,
) -> str:
    """Press a button in a message; returns the response_url the ephemeral reply goes to."""
    url = candor.slack.response_url()
    payload = ev.block_actions(
        action_id,
        value,
        user_id=user,
        channel_id=channel,
        message_ts=message_ts,
        response_url=url,
        trigger_id=f"trigger-{action_id}",
    )
    status, _ = await candor.send.action(payload)
    assert status == 200
    return url


def ephemeral_texts(candor: Candor) -> list[str]:  # noqa: F811
    """What users were told through their clicks' response_url, oldest first."""
    return [str(c.get("text")) for c in candor.slack.calls_to("response_url")]


async def last_answer(deps: Deps) -> AnswerRow:
    async with deps.db.sessions() as session:
        row = (await session.execute(select(AnswerRow).order_by(AnswerRow.id.desc()))).scalars()
        return row.first()  # type: ignore[return-value]


async def review_of(deps: Deps, answer_id: int) -> AnswerReviewRow | None:
    async with deps.db.sessions() as session:
        result = await session.execute(
            select(AnswerReviewRow).where(AnswerReviewRow.answer_id == answer_id)
        )
        return result.scalar_one_or_none()
