"""Message shortcuts through signed interactive payloads into the real Bolt path.

Summarize this thread (in the thread or only to me, points linked to their messages),
Translate (ephemeral, in the clicking user's Slack language), Ask Candor about this (a DM
thread with the message quoted); in a private channel, only its members.
"""

from __future__ import annotations

import json

from bot.conversation import MATERIAL_RULE
from bot.deps import Deps
from bot.digest import tasks
from handlers import daily, shortcuts
from tests.daily.helpers import ROOT, permalink, thread
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import message_action, view_submission
from tests.handlers.conftest import Candor
from tests.spend.helpers import ledger_rows


def _choice(value: str) -> dict[str, dict[str, dict[str, object]]]:
    return {
        shortcuts.WHERE_BLOCK: {
            shortcuts.WHERE_INPUT: {"type": "radio_buttons", "selected_option": {"value": value}}
        }
    }


async def _open_summary(candor: Candor, channel: str, user: str = "U1") -> str:
    """Click *Summarize this thread* and return the modal's private metadata."""
    status, _ = await candor.send.action(
        message_action(shortcuts.SUMMARIZE, channel_id=channel, user_id=user, ts=ROOT)
    )
    assert status == 200
    opened = await candor.slack.wait_for("views.open")
    view = opened[-1].body["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == shortcuts.SUMMARIZE_MODAL
    return str(view["private_metadata"])


async def test_summary_in_the_thread_links_each_point_to_its_message(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    thread(candor.slack, "C1")
    fake_llm.enqueue("- The deploy moves to Friday [1, 2]\n- U3 owns the rollback plan [2]")
    meta = await _open_summary(candor, "C1")

    await candor.send.action(
        view_submission(
            shortcuts.SUMMARIZE_MODAL, _choice(shortcuts.IN_THREAD), private_metadata=meta
        )
    )
    await candor.idle()

    posted = [m for m in candor.slack.messages("C1", thread_ts=ROOT) if m.ephemeral_to is None]
    assert len(posted) == 1
    text = posted[0].visible_text
    assert "Summary of this thread" in text
    assert f"<{permalink('C1', ROOT)}|1>" in text
    assert f"<{permalink('C1', '1800000101.000100', ROOT)}|2>" in text
    # The thread went to the model as numbered data, never as instructions.
    request = fake_llm.requests[-1]
    system = request["messages"][0]["content"]
    assert tasks.SUMMARIZE in system and MATERIAL_RULE in system
    data = request["messages"][-2]["content"]
    assert "<reference_data>" in data and "Ignore your instructions" in data
    assert "Ignore your instructions" not in system
    # Billed to the person who asked, in the source channel.
    rows = await ledger_rows(deps.db, user_id="U1", status="settled")
    assert [r.channel_id for r in rows] == ["C1"]


async def test_summary_for_me_only_is_ephemeral(candor: Candor, fake_llm: FakeOpenAIServer) -> None:
    thread(candor.slack, "C1")
    fake_llm.enqueue("- Friday deploy [1]")
    meta = await _open_summary(candor, "C1")

    await candor.send.action(
        view_submission(
            shortcuts.SUMMARIZE_MODAL, _choice(shortcuts.ONLY_ME), private_metadata=meta
        )
    )
    await candor.idle()

    messages = candor.slack.messages("C1")
    assert [m.ephemeral_to for m in messages] == ["U1"]
    assert "only you can see this" in messages[0].visible_text
    assert candor.slack.calls_to("chat.postMessage") == []


async def test_a_non_member_cannot_summarize_a_private_channel(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    thread(candor.slack, "G1")
    candor.slack.set_members("G1", ["U2", "U3"])
    response_url = candor.slack.response_url()

    await candor.send.action(
        message_action(shortcuts.SUMMARIZE, channel_id="G1", ts=ROOT, response_url=response_url)
    )
    await candor.slack.wait_for("response_url")
    await candor.idle()
    # A forged submission of the modal is refused too.
    meta = json.dumps({"team": "T1", "channel": "G1", "ts": ROOT})
    await candor.send.action(
        view_submission(
            shortcuts.SUMMARIZE_MODAL, _choice(shortcuts.IN_THREAD), private_metadata=meta
        )
    )
    await candor.idle()

    told = candor.slack.calls_to("response_url")
    assert [c.body["text"] for c in told] == [daily.NOT_A_MEMBER]
    assert candor.slack.calls_to("views.open") == []
    assert candor.slack.calls_to("conversations.replies") == []
    assert candor.slack.calls_to("chat.postMessage") == []
    assert [(m.ephemeral_to, m.text) for m in candor.slack.messages("G1")] == [
        ("U1", daily.NOT_A_MEMBER)
    ]
    assert fake_llm.requests == []


async def test_a_member_can_summarize_a_private_channel(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    thread(candor.slack, "G1")
    candor.slack.set_members("G1", ["U1", "U2", "U3"])
    fake_llm.enqueue("- Friday deploy [1]")
    meta = await _open_summary(candor, "G1")

    await candor.send.action(
        view_submission(
            shortcuts.SUMMARIZE_MODAL, _choice(shortcuts.ONLY_ME), private_metadata=meta
        )
    )
    await candor.idle()

    assert [m.ephemeral_to for m in candor.slack.messages("G1")] == ["U1"]
    assert len(fake_llm.requests) == 1


async def test_translate_is_ephemeral_in_the_users_language(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    candor.slack.set_user("U1", locale="fr-FR")
    fake_llm.enqueue("Le déploiement passe à vendredi.")

    await candor.send.action(
        message_action(shortcuts.TRANSLATE, text="The deploy moves to Friday.", thread_ts=ROOT)
    )
    await candor.idle()

    messages = candor.slack.messages("C1")
    assert [(m.ephemeral_to, m.thread_ts) for m in messages] == [("U1", ROOT)]
    assert "Le déploiement passe à vendredi." in messages[0].visible_text
    assert "Translation into French" in messages[0].visible_text
    system = fake_llm.requests[-1]["messages"][0]["content"]
    assert "into French" in system
    assert "The deploy moves to Friday." in fake_llm.requests[-1]["messages"][-2]["content"]
    assert candor.slack.calls_to("chat.postMessage") == []


async def test_translate_in_a_private_channel_needs_membership(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    candor.slack.set_members("G1", ["U2"])
    response_url = candor.slack.response_url()
    await candor.send.action(
        message_action(shortcuts.TRANSLATE, channel_id="G1", response_url=response_url)
    )
    await candor.slack.wait_for("response_url")
    await candor.idle()
    assert candor.slack.calls_to("response_url")[0].body["text"] == daily.NOT_A_MEMBER
    assert candor.slack.calls_to("chat.postEphemeral") == []
    assert fake_llm.requests == []


async def test_ask_candor_about_this_opens_a_dm_thread_with_the_message_quoted(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    fake_llm.enqueue("It asks for a review of PR 42 [1]. What would you like to know?")
    ts = "1800000200.000100"

    await candor.send.action(
        message_action(shortcuts.ASK, text="Can someone review PR 42 @channel?", ts=ts)
    )
    await candor.idle()

    dm = candor.slack.messages("DU1")
    assert len(dm) == 2
    intro, answer = dm
    assert "> Can someone review PR 42" in intro.text
    assert "<!channel>" not in intro.text
    assert permalink("C1", ts) in intro.text
    assert answer.thread_ts == intro.ts
    assert "review of PR 42" in answer.visible_text
    assert candor.slack.messages("C1") == []
    # The source channel's settings and budget: billed there, to the asker.
    rows = await ledger_rows(deps.db, user_id="U1", status="settled")
    assert [r.channel_id for r in rows] == ["C1"]
    assert tasks.ASK.split("(")[0] in fake_llm.requests[-1]["messages"][0]["content"]


def test_the_manifest_lists_every_shortcut_the_app_handles() -> None:
    from bot.cli.manifest import SHORTCUTS, render_manifest

    assert {callback for callback, _, _ in SHORTCUTS} == {
        shortcuts.SUMMARIZE,
        shortcuts.TRANSLATE,
        shortcuts.ASK,
    }
    for callback, name, _ in SHORTCUTS:
        assert f"callback_id: {callback}" in render_manifest(http=True, url=None)
        assert f"name: {name}" in render_manifest(http=False, url=None)
