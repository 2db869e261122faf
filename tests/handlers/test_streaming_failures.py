"""Slack or the LLM failing mid-answer, through the real Bolt path (issue 9: 2.5, 2.6, 2.11).

Each test asserts what the user saw in the fake Slack and what the ledger recorded.
"""

from __future__ import annotations

import json
import re

import pytest

from bot.deps import Deps
from bot.ports import RetrievalQuery, RetrievedHit
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention
from tests.handlers.conftest import Candor
from tests.spend.helpers import ledger_rows

ANSWER = " ".join(f"Step {i}: run the deploy script and watch the dashboard." for i in range(12))
LLM_BLAMED = "The language model failed"


async def test_three_rate_limited_appends_still_deliver_the_whole_answer_and_bill_it(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue(ANSWER, chunk_size=10, prompt_tokens=50, completion_tokens=120)
    candor.slack.rate_limit_next("chat.appendStream", retry_after=0, times=3)
    mention = app_mention("<@UBOT> how do we deploy?")

    await candor.send.event(mention)
    await candor.idle()

    [message] = candor.slack.messages("C1")
    assert message.text == ANSWER
    assert "gpt-4o-mini · 170 tokens (50 in, 120 out)" in message.visible_text
    assert not any(LLM_BLAMED in t for t in candor.slack.texts())
    assert candor.slack.errors().count(("chat.appendStream", "ratelimited")) == 3
    [row] = await ledger_rows(deps.db)
    assert (row.status, row.estimated) == ("settled", False)
    assert (row.prompt_tokens, row.completion_tokens) == (50, 120)


async def test_message_deleted_mid_stream_is_delivered_anew_and_billed(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue(ANSWER, chunk_size=10, prompt_tokens=50, completion_tokens=120)
    candor.slack.delete_message_before("chat.appendStream", call=2)
    mention = app_mention("<@UBOT> how do we deploy?")

    await candor.send.event(mention)
    await candor.idle()

    [message] = candor.slack.messages("C1")  # the streamed one was deleted
    assert message.thread_ts == mention["ts"]
    assert message.text.startswith(ANSWER)
    assert "50 in, 120 out" in message.text
    assert not any(LLM_BLAMED in t for t in candor.slack.texts())
    [row] = await ledger_rows(deps.db)
    assert (row.status, row.completion_tokens) == ("settled", 120)


async def test_llm_stream_cut_mid_answer_says_cut_off_and_bills_an_estimate(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("The first part. The second part never arrives.", chunk_size=8, cut_after=2)

    await candor.send.event(app_mention("<@UBOT> tell me"))
    await candor.idle()

    [message] = candor.slack.messages("C1")
    assert message.text == (
        "The first part. \n\n"
        "The language model's answer was cut off before it finished; please ask again."
    )
    [row] = await ledger_rows(deps.db)
    assert (row.status, row.estimated) == ("settled", True)
    assert row.completion_tokens > 0


async def test_a_trickling_llm_is_stopped_by_the_total_deadline(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    deps.settings.openai.total_timeout_seconds = 1.0
    fake_llm.enqueue("ab" * 20, chunk_size=2, trickle=0.3)  # 6 s, one read every 0.3 s

    await candor.send.event(app_mention("<@UBOT> slowly please"))
    await candor.idle()

    [message] = candor.slack.messages("C1")
    assert message.text.endswith(
        "The language model did not finish within 1 seconds, so Candor stopped waiting; "
        "please try again or ask for a shorter answer."
    )
    [row] = await ledger_rows(deps.db)
    assert (row.status, row.estimated) == ("settled", True)


class OneSource:
    async def retrieve(self, query: RetrievalQuery) -> list[RetrievedHit]:
        return [
            RetrievedHit(
                index=1,
                text="Deploys run with make deploy.",
                title="<!here> Runbook @everyone",
                link="https://wiki.test/runbook",
                source="wiki",
                scope="workspace",
                score=0.9,
            )
        ]


PINGS = (
    "Heads up <!channel> and <!here|here>, <!everyone> too; <!subteam^S123|@oncall> "
    "and plain @here or @channel. Run make deploy [1]."
)
LIVE = re.compile(r"<!|@(?:channel|here|everyone)\b", re.I)


@pytest.mark.parametrize("stream", [True, False])
async def test_mass_pings_in_model_output_never_reach_slack_live(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer, stream: bool
) -> None:
    if not stream:
        candor.slack.refuse_streaming()
    deps.manager.knowledge = OneSource()  # type: ignore[assignment]
    fake_llm.enqueue(PINGS, chunk_size=3)  # pings split across deltas

    await candor.send.event(app_mention("<@UBOT> deploy?"))
    await candor.idle()

    sent = [c for c in candor.slack.calls if c.method.startswith("chat.")]
    assert sent
    for call in sent:
        assert not LIVE.search(json.dumps(call.body, ensure_ascii=False)), call
    [message] = candor.slack.messages("C1")
    shown = message.visible_text.replace("\u200b", "")
    assert "Heads up @channel and @here, @everyone too; @oncall and plain @here" in shown
    assert "Runbook" in shown
