"""The everyday Home tab: the private prompt box, catch-up, and the recent threads."""

from __future__ import annotations

import json
from typing import Any

from bot.deps import Deps
from handlers import home_daily
from tests.daily.helpers import permalink
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import (
    app_mention,
    block_actions,
    event_callback,
    new_ts,
    view_submission,
)
from tests.handlers.conftest import Candor
from tests.spend.helpers import ledger_rows


def _view(call_body: dict[str, Any]) -> dict[str, Any]:
    view = call_body["view"]
    return json.loads(view) if isinstance(view, str) else view


def _texts(view: dict[str, Any]) -> str:
    out = []
    for block in view["blocks"]:
        text = block.get("text")
        if isinstance(text, dict):
            out.append(text["text"])
        for element in block.get("elements", []):
            if isinstance(element.get("text"), str):
                out.append(element["text"])
    return "\n".join(out)


async def _open_home(candor: Candor, user: str = "U1") -> dict[str, Any]:
    event = {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home"}
    event["event_ts"] = new_ts()
    await candor.send.event(event_callback(event))
    published = await candor.slack.wait_for("views.publish")
    return _view(published[-1].body)


async def test_home_shows_the_prompt_box_and_recent_threads(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    roots = [new_ts(), new_ts()]
    for root in roots:
        await candor.send.event(app_mention("<@UBOT> how do we deploy?", ts=root))
        await candor.idle()
    await candor.send.event(app_mention("<@UBOT> mine", user="U9", ts=new_ts()))
    await candor.idle()

    view = await _open_home(candor)

    actions = [b.get("accessory", {}).get("action_id") for b in view["blocks"]]
    assert home_daily.ASK_ACTION in actions and home_daily.CATCHUP_ACTION in actions
    shown = _texts(view)
    assert "Your recent threads with Candor" in shown
    for root in roots:
        assert permalink("C1", root) in shown
    assert shown.index(permalink("C1", roots[1])) < shown.index(permalink("C1", roots[0]))
    assert shown.count("<#C1>") == 2  # U9's thread is not U1's


async def test_home_without_threads_says_how_to_start(candor: Candor) -> None:
    assert home_daily.NO_THREADS in _texts(await _open_home(candor))


async def test_ask_candor_from_home_answers_only_in_the_modal(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    fake_llm.enqueue("Deploys run from the main branch every Friday.")
    await candor.send.action(
        block_actions(home_daily.ASK_ACTION, view={"id": "VHOME", "type": "home"})
    )
    opened = await candor.slack.wait_for("views.open")
    assert _view(opened[-1].body)["callback_id"] == home_daily.ASK_MODAL

    values = {
        home_daily.QUESTION_BLOCK: {
            home_daily.QUESTION_INPUT: {"type": "plain_text_input", "value": "How do I deploy?"}
        }
    }
    status, body = await candor.send.action(view_submission(home_daily.ASK_MODAL, values))
    assert status == 200
    ack = json.loads(body)
    assert ack["response_action"] == "update" and home_daily.THINKING in _texts(ack["view"])
    await candor.idle()

    updated = await candor.slack.wait_for("views.update")
    assert updated[-1].body["view_id"] == "V1"
    shown = _texts(_view(updated[-1].body))
    assert "Deploys run from the main branch every Friday." in shown
    assert "You asked: How do I deploy?" in shown
    assert fake_llm.requests[-1]["messages"][-1]["content"] == "How do I deploy?"
    assert candor.slack.calls_to("chat.postMessage") == []
    rows = await ledger_rows(deps.db, user_id="U1", status="settled")
    assert [r.channel_id for r in rows] == ["DU1"]


async def test_catch_me_up_from_home(candor: Candor, fake_llm: FakeOpenAIServer) -> None:
    candor.slack.set_members("C7", ["U1"])
    candor.slack.set_history(
        "C7",
        [{"type": "message", "user": "U2", "text": "Release is out", "ts": "1795640000.000100"}],
    )
    fake_llm.enqueue("- The release is out [1]")
    await candor.send.action(
        block_actions(home_daily.CATCHUP_ACTION, view={"id": "VHOME", "type": "home"})
    )
    opened = await candor.slack.wait_for("views.open")
    assert _view(opened[-1].body)["callback_id"] == home_daily.CATCHUP_MODAL

    def values(since: str) -> dict[str, Any]:
        return {
            home_daily.CHANNEL_BLOCK: {
                home_daily.CHANNEL_INPUT: {
                    "type": "conversations_select",
                    "selected_conversation": "C7",
                }
            },
            home_daily.SINCE_BLOCK: {
                home_daily.SINCE_INPUT: {"type": "plain_text_input", "value": since}
            },
        }

    _, body = await candor.send.action(view_submission(home_daily.CATCHUP_MODAL, values("soon")))
    assert json.loads(body)["response_action"] == "errors"
    assert fake_llm.requests == []

    await candor.send.action(view_submission(home_daily.CATCHUP_MODAL, values("1w")))
    await candor.idle()
    updated = await candor.slack.wait_for("views.update")
    shown = _texts(_view(updated[-1].body))
    assert "Catch-up on <#C7>" in shown and "The release is out" in shown
    assert f"<{permalink('C7', '1795640000.000100')}|1>" in shown
