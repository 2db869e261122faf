"""`/candor` through the real Bolt HTTP path: each change reaches the next LLM request."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.conversation import Turn
from bot.db import repo
from bot.db.admin_models import AuditRow
from bot.deps import Deps
from tests.admin.conftest import ADMIN, GUEST, MEMBER, OWNER, TEAM, AdminHarness
from tests.fakes.openai_server import FakeOpenAIServer


async def ask(deps: Deps, llm: FakeOpenAIServer, channel: str = "C1") -> dict[str, Any]:
    """Send one user message through the manager; return the request the LLM got."""
    llm.enqueue("ok")
    await deps.manager.reply(
        Turn(workspace_id=TEAM, channel_id=channel, thread_ts="1.1", user_id="U9", text="hi")
    )
    return llm.last


async def audit_rows(deps: Deps) -> list[AuditRow]:
    async with deps.db.sessions() as session:
        return list((await session.execute(select(AuditRow).order_by(AuditRow.id))).scalars())


async def test_help_and_unknown_subcommand_show_usage(harness: AdminHarness) -> None:
    assert "config show" in await harness.command("help", user=MEMBER)
    reply = await harness.command("frobnicate")
    assert "I don't know `frobnicate`" in reply
    assert "`temperature 0.7 [#channel]`" in reply
    assert "config show" in await harness.command("")


async def test_unbalanced_quotes_get_a_clear_message(harness: AdminHarness) -> None:
    reply = await harness.command('system set "unfinished')
    assert "check your quotes" in reply


async def test_temperature_changes_the_next_llm_request(
    harness: AdminHarness, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    reply = await harness.command("temperature 1.4")
    assert "<#C1>" in reply and "1.4" in reply
    assert (await ask(deps, fake_llm))["temperature"] == 1.4
    # Another channel still uses the built-in default.
    assert (await ask(deps, fake_llm, "C2"))["temperature"] == 0.3


async def test_named_channel_and_workspace_default(
    harness: AdminHarness, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await harness.command("model gpt-4o <#C0OTHER01|random>")
    await harness.command("max-tokens 300 C0OTHER01")
    await harness.command("temperature 0.9 --workspace")
    body = await ask(deps, fake_llm, "C0OTHER01")
    assert body["model"] == "gpt-4o"
    assert body["max_tokens"] == 300
    assert body["temperature"] == 0.9
    here = await ask(deps, fake_llm, "C1")
    assert here["model"] == "gpt-4o-mini"
    assert here["temperature"] == 0.9


async def test_system_set_show_and_reset(
    harness: AdminHarness, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    reply = await harness.command('system set "You are the {channel} helper. Be brief."')
    assert ":white_check_mark:" in reply
    body = await ask(deps, fake_llm)
    assert body["messages"][0]["content"] == "You are the C1 helper. Be brief."
    assert "You are the {channel} helper" in await harness.command("system show")
    await harness.command("system reset")
    body = await ask(deps, fake_llm)
    assert body["messages"][0]["content"].startswith("You are Candor")
    assert "inherited from workspace default" in await harness.command("system show")


async def test_disable_and_enable(harness: AdminHarness, deps: Deps) -> None:
    await harness.command("disable")
    assert (await deps.manager.channel_settings(TEAM, "C1")).enabled is False
    await harness.command("enable")
    assert (await deps.manager.channel_settings(TEAM, "C1")).enabled is True


async def test_kb_settings_and_cross_channel_warning(harness: AdminHarness, deps: Deps) -> None:
    reply = await harness.command("kb scopes workspace,channel:C0SECRET1")
    assert "will see knowledge ingested from <#C0SECRET1>" in reply
    await harness.command("kb top-k 8")
    await harness.command("kb floor 0.25")
    eff = await deps.manager.channel_settings(TEAM, "C1")
    assert eff.kb_scopes == ("workspace", "channel:C0SECRET1")
    assert eff.kb_top_k == 8
    assert eff.kb_score_floor == 0.25
    # The channel's own scope needs no warning.
    assert "warning" not in await harness.command("kb scopes channel:C1")


async def test_invalid_values_are_refused_with_the_allowed_range(
    harness: AdminHarness, deps: Deps
) -> None:
    cases = {
        "temperature 2.5": "from 0 to 2",
        "temperature warm": "from 0 to 2",
        "max-tokens 0": "from 1 to 32000",
        "max-tokens 40000": "from 1 to 32000",
        "kb top-k 21": "from 1 to 20",
        "kb floor 1.5": "from 0 to 1",
        "kb scopes everything": "`workspace` or `channel:<ID>`",
        "reset colour": "Settings are:",
        "model": "Usage",
    }
    for text, allowed in cases.items():
        reply = await harness.command(text)
        assert allowed in reply, (text, reply)
    async with deps.db.sessions() as session:
        assert await repo.get_channel_row(session, workspace_id=TEAM, channel_id="C1") is None
    assert await audit_rows(deps) == []


async def test_model_must_be_on_the_allowed_list(harness: AdminHarness, deps: Deps) -> None:
    deps.settings.candor.allowed_models = "gpt-4o-mini, gpt-4o"
    reply = await harness.command("model llama3")
    assert "Allowed: gpt-4o-mini, gpt-4o." in reply
    await harness.command("model gpt-4o")
    assert (await deps.manager.channel_settings(TEAM, "C1")).model == "gpt-4o"


async def test_temperature_refused_for_reasoning_models(harness: AdminHarness, deps: Deps) -> None:
    await harness.command("model o3-mini")
    reply = await harness.command("temperature 0.5")
    assert "reasoning model" in reply
    eff = await deps.manager.channel_settings(TEAM, "C1")
    assert "temperature" in eff.inherited


async def test_reset_field_back_to_inherit(harness: AdminHarness, deps: Deps) -> None:
    await harness.command("temperature 1.1")
    await harness.command("model gpt-4o")
    reply = await harness.command("reset temperature")
    assert "temperature now inherits" in reply
    eff = await deps.manager.channel_settings(TEAM, "C1")
    assert "temperature" in eff.inherited and eff.model == "gpt-4o"
    await harness.command("reset all")
    eff = await deps.manager.channel_settings(TEAM, "C1")
    assert eff.inherited == frozenset(eff.as_dict())
    rows = await audit_rows(deps)
    assert [(r.action, r.before, r.after) for r in rows[-2:]] == [
        ("reset", {"temperature": 1.1}, {"temperature": None}),
        ("reset", {"model": "gpt-4o"}, {"model": None}),
    ]
    assert "Nothing to change" in await harness.command("reset all")
    assert len(await audit_rows(deps)) == 4


async def test_setting_the_same_value_again_changes_nothing(
    harness: AdminHarness, deps: Deps
) -> None:
    await harness.command("temperature 0.6")
    assert "Nothing to change: <#C1> already has that." in await harness.command("temperature 0.6")
    assert len(await audit_rows(deps)) == 1


async def test_config_show_marks_inherited_values(harness: AdminHarness) -> None:
    await harness.command("temperature 0.8 --workspace")
    await harness.command("model gpt-4o")
    reply = await harness.command("config show")
    lines = {line.split(":")[0]: line for line in reply.splitlines()}
    assert "inherited" not in lines["• model"]
    assert "`gpt-4o`" in lines["• model"]
    assert (
        "0.8" in lines["• temperature"]
        and "inherited from workspace default" in lines["• temperature"]
    )
    default = await harness.command("config show --workspace")
    assert "workspace default" in default
    assert "built-in" in default


async def test_non_admin_is_refused_and_nothing_changes(harness: AdminHarness, deps: Deps) -> None:
    for user in (MEMBER, GUEST):
        reply = await harness.command("temperature 1.5", user=user)
        assert reply.startswith("Sorry, only Candor admins can do that")
    assert (await deps.manager.channel_settings(TEAM, "C1")).temperature == 0.3
    assert await audit_rows(deps) == []


async def test_owner_and_allowlisted_users_are_admins(harness: AdminHarness, deps: Deps) -> None:
    assert ":white_check_mark:" in await harness.command("temperature 1", user=OWNER)
    deps.settings.candor.admin_users = MEMBER
    assert ":white_check_mark:" in await harness.command("temperature 1.2", user=MEMBER)


async def test_admins_add_and_remove(harness: AdminHarness, deps: Deps) -> None:
    assert "Sorry" in await harness.command("temperature 1", user=MEMBER)
    assert "is now a Candor admin" in await harness.command(f"admins add <@{MEMBER}|member>")
    assert ":white_check_mark:" in await harness.command("temperature 1", user=MEMBER)
    assert f"<@{MEMBER}>" in await harness.command("admins")
    assert "guests cannot be Candor admins" in await harness.command(f"admins add {GUEST}")
    assert "no longer" in await harness.command(f"admins remove <@{MEMBER}>")
    assert "Sorry" in await harness.command("temperature 1.3", user=MEMBER)
    assert "@-autocomplete" in await harness.command("admins add @bob")


async def test_audit_records_who_what_before_and_after(harness: AdminHarness, deps: Deps) -> None:
    await harness.command("temperature 1.5")
    await harness.command("temperature 0.2")
    await harness.command("max-tokens 500 --workspace")
    rows = await audit_rows(deps)
    assert [(r.actor_id, r.action, r.target) for r in rows] == [
        (ADMIN, "temperature", "C1"),
        (ADMIN, "temperature", "C1"),
        (ADMIN, "max-tokens", "default"),
    ]
    assert rows[0].before == {"temperature": None} and rows[0].after == {"temperature": 1.5}
    assert rows[1].before == {"temperature": 1.5} and rows[1].after == {"temperature": 0.2}
    reply = await harness.command("audit 2")
    assert "Latest 2 admin changes" in reply
    assert reply.index("max-tokens") < reply.index("temperature")
    assert '`{"temperature": 1.5}` → `{"temperature": 0.2}`' in reply
    assert "from 1 to 50" in await harness.command("audit 500")


async def test_channel_name_without_a_link_is_explained(harness: AdminHarness) -> None:
    # The fake has no conversations.list; Candor must explain, not fail.
    reply = await harness.command("temperature 1 #random")
    assert "I could not find #random" in reply


async def test_system_edit_opens_a_modal_and_the_submission_saves(
    harness: AdminHarness, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    reply = await harness.command("system edit")
    assert "Opened the editor" in reply
    opened = harness.slack.calls_to("views.open")[-1]
    view = opened.get("view")
    import json

    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == "candor_system_edit"
    metadata = view["private_metadata"]
    long_text = "You are the release helper.\n" + "Answer with care. " * 50
    values = {"system_message": {"value": {"type": "plain_text_input", "value": long_text}}}
    refused = await harness.submit("candor_system_edit", values, metadata=metadata, user=MEMBER)
    assert refused["response_action"] == "errors"
    assert await harness.submit("candor_system_edit", values, metadata=metadata) == {}
    body = await ask(deps, fake_llm)
    assert body["messages"][0]["content"] == long_text.strip()
    assert (await audit_rows(deps))[-1].action == "system set"
