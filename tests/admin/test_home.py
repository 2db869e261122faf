"""App Home: everyone sees how to use Candor; admins see settings and edit them."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from bot.db.admin_models import AuditRow
from bot.deps import Deps
from tests.admin.conftest import ADMIN, GUEST, MEMBER, TEAM, AdminHarness


def texts(view: dict[str, Any]) -> str:
    out = []
    for block in view["blocks"]:
        text = block.get("text")
        if isinstance(text, dict):
            out.append(text["text"])
        for element in block.get("elements", []):
            out.append(element.get("text", ""))
    return "\n".join(out)


def buttons(view: dict[str, Any]) -> list[str]:
    return [
        b["accessory"]["value"]
        for b in view["blocks"]
        if b.get("accessory", {}).get("action_id") == "candor_home_edit"
    ]


async def test_members_and_guests_see_only_the_user_part(harness: AdminHarness) -> None:
    for user in (MEMBER, GUEST):
        view = await harness.open_home(user)
        assert view["type"] == "home"
        assert "How to use it" in texts(view)
        assert "Admin" not in texts(view)
        assert buttons(view) == []
    published = harness.slack.calls_to("views.publish")
    assert [c.get("user_id") for c in published] == [MEMBER, GUEST]


async def test_admins_see_defaults_and_channel_overrides(harness: AdminHarness) -> None:
    await harness.command("temperature 1.2 <#C0ENG0001|eng>")
    await harness.command("model gpt-4o --workspace")
    view = await harness.open_home(ADMIN)
    shown = texts(view)
    assert "Workspace defaults" in shown and "`gpt-4o`" in shown
    assert "<#C0ENG0001>: temperature 1.2" in shown
    assert buttons(view) == ["*", "C0ENG0001"]


async def test_edit_button_opens_the_modal_and_submission_saves_with_audit(
    harness: AdminHarness, deps: Deps
) -> None:
    await harness.command("temperature 1.2 C0ENG0001")
    await harness.click("candor_home_edit", "C0ENG0001")
    opened = await harness.slack.wait_for("views.open")
    view = opened[-1].get("view")
    modal = json.loads(view) if isinstance(view, str) else view
    assert modal["callback_id"] == "candor_settings_edit"
    initial = {
        b["block_id"]: b["element"].get("initial_value")
        for b in modal["blocks"]
        if b["type"] == "input"
    }
    assert initial["temperature"] == "1.2"

    def state(**values: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for block in modal["blocks"]:
            if block["type"] != "input":
                continue
            bid = block["block_id"]
            if bid == "enabled":
                out[bid] = {
                    "value": {
                        "type": "static_select",
                        "selected_option": {"value": values.get(bid, "inherit")},
                    }
                }
            else:
                value = values.get(bid, block["element"].get("initial_value"))
                out[bid] = {"value": {"type": "plain_text_input", "value": value}}
        return out

    bad = await harness.submit(
        "candor_settings_edit", state(max_answer_tokens="0"), metadata=modal["private_metadata"]
    )
    assert bad == {
        "response_action": "errors",
        "errors": {"max_answer_tokens": "Max tokens must be a whole number from 1 to 32000."},
    }

    publishes = len(harness.slack.calls_to("views.publish"))
    ok = await harness.submit(
        "candor_settings_edit",
        state(temperature="", model="gpt-4o", enabled="off"),
        metadata=modal["private_metadata"],
    )
    assert ok == {}
    eff = await deps.manager.channel_settings(TEAM, "C0ENG0001")
    assert eff.model == "gpt-4o" and eff.enabled is False
    assert "temperature" in eff.inherited
    async with deps.db.sessions() as session:
        row = (
            (await session.execute(select(AuditRow).order_by(AuditRow.id.desc()))).scalars().first()
        )
    assert row is not None and row.action == "settings edit" and row.target == "C0ENG0001"
    assert row.before == {"temperature": 1.2, "model": None, "enabled": None}
    assert row.after == {"temperature": None, "model": "gpt-4o", "enabled": False}
    await harness.slack.wait_for("views.publish", count=publishes + 1)


async def test_non_admin_cannot_open_or_submit_the_settings_modal(
    harness: AdminHarness, deps: Deps
) -> None:
    await harness.click("candor_home_edit", "*", user=MEMBER)
    opened = await harness.slack.wait_for("views.open")
    view = opened[-1].get("view")
    notice = json.loads(view) if isinstance(view, str) else view
    assert "only Candor admins" in notice["blocks"][0]["text"]["text"]
    metadata = json.dumps({"w": TEAM, "c": "*", "o": "home"})
    values = {"temperature": {"value": {"type": "plain_text_input", "value": "1.9"}}}
    refused = await harness.submit("candor_settings_edit", values, metadata=metadata, user=MEMBER)
    assert refused["response_action"] == "errors"
    assert (await deps.manager.channel_settings(TEAM, "C1")).temperature == 0.3
