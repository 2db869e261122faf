"""`/candor tools …`: which tools a channel may use (audited), and the tool step limit.

    /candor tools [#channel]                                   what is allowed there
    /candor tools allow|deny SERVER[/TOOL] [#channel|--workspace]
    /candor tools readonly SERVER/TOOL [off]                   no approval needed (or again)
    /candor tools steps N [#channel|--workspace]               most LLM calls per answer

`SERVER` is an MCP server of `CANDOR_MCP_CONFIG` or `builtin`. Rules, defaults and
precedence live in `bot.tools.policy`; the toolbox writes them with their audit rows.
"""

from __future__ import annotations

from bot.admin import settings as validate
from bot.admin.settings import InvalidValue
from bot.tools import policy
from handlers.commands.base import Invocation, Subcommand, one_value, pop_target, set_values

_USAGE = (
    "Usage: `/candor tools [#channel]`, `/candor tools allow|deny SERVER[/TOOL] "
    "[#channel|--workspace]`, `/candor tools readonly SERVER/TOOL [off]`, "
    "`/candor tools steps N [#channel|--workspace]`"
)


async def cmd_tools(call: Invocation) -> str:
    what = call.args[0].lower() if call.args else "list"
    if what in ("allow", "deny", "readonly", "steps"):
        call.args = call.args[1:]
    else:
        what = "list"
    box = call.deps.manager.tools
    target = await pop_target(call)
    channel = policy.ANY if target.is_default else target.channel_id
    if what == "steps":
        value = validate.parse_tool_steps(one_value(call, "/candor tools steps N [#channel]"))
        return await set_values(call, target, "tools steps", {"tool_max_steps": value})
    if what == "list":
        if call.args:
            raise InvalidValue(_USAGE)
        return await _listing(call, channel, target.label)
    if what == "readonly":
        if not call.args or len(call.args) > 2:
            raise InvalidValue(_USAGE)
        on = len(call.args) == 1 or call.args[1].lower() not in ("off", "no", "false")
        changed = await box.set_read_only(
            workspace_id=call.team_id, name=call.args[0], read_only=on, actor_id=call.user_id
        )
        state = "read-only: it runs without asking" if on else "not read-only: each call asks"
        return f"`{call.args[0]}` is {state}." + ("" if changed else " (No change.)")
    name = one_value(call, f"/candor tools {what} SERVER[/TOOL] [#channel|--workspace]")
    changed = await box.set_access(
        workspace_id=call.team_id,
        channel_id=channel,
        name=name,
        allowed=what == "allow",
        actor_id=call.user_id,
    )
    verb = "allowed" if what == "allow" else "denied"
    return f"`{name}` is {verb} in {target.label}." + ("" if changed else " (No change.)")


async def _listing(call: Invocation, channel: str, label: str) -> str:
    box = call.deps.manager.tools
    rules = await box.rules(call.team_id)
    lines = [f"*Tools in {label}* (nothing is allowed until an admin allows it)"]
    for entry in await box.catalogue(call.team_id):
        spec = entry.spec
        here = (
            any(r.allowed for r in rules if r.server == spec.server)
            if channel == policy.ANY
            else policy.is_allowed(
                rules,
                workspace_id=call.team_id,
                channel_id=channel,
                server=spec.server,
                tool=spec.tool,
            )
        )
        mark = "✅" if here else "▫️"
        kind = "read-only" if spec.read_only else "asks for approval"
        lines.append(f"{mark} `{spec.label}` — {kind}; reads {spec.reads or 'its server'}")
    return "\n".join(lines)


SUBCOMMANDS = (
    Subcommand(
        "tools",
        (
            "tools [#channel]",
            "tools allow|deny SERVER[/TOOL] [#channel|--workspace]",
            "tools readonly SERVER/TOOL [off]",
            "tools steps N [#channel|--workspace]",
        ),
        cmd_tools,
        "which tools (built-ins, MCP servers) a channel may use; read-only tools run without "
        f"approval; steps {validate.TOOL_STEPS_MIN}–{validate.TOOL_STEPS_MAX} LLM calls per answer",
    ),
)
