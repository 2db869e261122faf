"""`/candor redact …`: what Candor withholds from the language model, per channel.

    /candor redact [show] [#channel]
    /candor redact secrets on|off [#channel]
    /candor redact pii on|off [#channel]
    /candor redact pattern add NAME 'REGEX' [#channel]
    /candor redact pattern remove NAME [#channel]
    /candor redact pattern list [#channel]

Switches and patterns are channel settings (`redact_secrets`, `redact_pii`,
`redact_patterns`), validated in `bot.admin.settings` / `bot.redaction` and written with
an audit row by `bot.admin.service`. A channel's pattern list replaces the workspace
default's: `add` and `remove` start from the list that applies there now, and
`/candor reset redact-patterns` makes the channel inherit again. The regex goes in single
quotes, so the command line keeps its backslashes.
"""

from __future__ import annotations

from bot.admin import settings as validate
from bot.admin.settings import ConfigView, InvalidValue
from bot.redaction import MAX_PATTERNS
from handlers.commands.base import Invocation, Subcommand, pop_target, set_values

USAGE = (
    "Usage: `/candor redact [#channel]`, `/candor redact secrets|pii on|off [#channel]`, "
    "`/candor redact pattern add NAME 'REGEX' [#channel]`, "
    "`/candor redact pattern remove NAME [#channel]`, `/candor redact pattern list [#channel]`."
)


def _patterns(view: ConfigView) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(view.values["redact_patterns"] or {}).items()}


def render_redaction(view: ConfigView) -> str:
    """What is withheld in a channel, and where each value comes from."""

    def switch(field: str) -> str:
        on = "on" if view.values[field] else "off"
        source = view.sources[field]
        level = "workspace default" if view.target.is_default else "channel"
        return on if source == level else f"{on} _({source})_"

    patterns = _patterns(view)
    lines = [
        f"*Redaction in {view.target.label}* (withheld from the language model)",
        f"• secrets (Slack tokens, API keys, private keys, URL passwords): "
        f"{switch('redact_secrets')}",
        f"• personal data (emails, phones, card numbers, IBANs, national IDs): "
        f"{switch('redact_pii')}",
    ]
    lines.append(render_patterns(view, patterns))
    return "\n".join(lines)


def render_patterns(view: ConfigView, patterns: dict[str, str]) -> str:
    if not patterns:
        return f"• patterns: none in {view.target.label}"
    listed = "\n".join(f"   `{name}`: `{regex}`" for name, regex in sorted(patterns.items()))
    return f"• patterns ({len(patterns)}):\n{listed}"


async def cmd_redact(call: Invocation) -> str:
    action = call.args[0].lower() if call.args else "show"
    if action in ("secrets", "pii"):
        target = await pop_target(call, skip=1)
        if len(call.args) != 2:
            raise InvalidValue(f"Usage: `/candor redact {action} on|off [#channel]`")
        what = "secrets" if action == "secrets" else "personal data"
        value = validate.parse_redact_switch(call.args[1], what)
        field = "redact_secrets" if action == "secrets" else "redact_pii"
        change = await call.admin.set_values(
            actor_id=call.user_id, target=target, action=f"redact {action}", values={field: value}
        )
        state = "on" if value else "off"
        if not change.changed:
            return f"Redaction of {what} in {target.label} is already {state}."
        return (
            f":white_check_mark: Redaction of {what} in {target.label} is now {state}. "
            "It applies from the next message."
        )
    if action == "pattern":
        return await _pattern(call)
    if action == "show":
        call.args = call.args[1:]
    target = await pop_target(call)
    if call.args:
        raise InvalidValue(USAGE)
    return render_redaction(await call.admin.config(target))


async def _pattern(call: Invocation) -> str:
    verb = call.args[1].lower() if len(call.args) > 1 else "list"
    if verb == "add":
        # NAME and REGEX come before the channel; a regex is never read as a channel.
        target = await pop_target(call, skip=4)
        if len(call.args) != 4:
            raise InvalidValue(
                "Usage: `/candor redact pattern add NAME 'REGEX' [#channel]` "
                "(the regex in single quotes)."
            )
        name, regex = validate.parse_redact_pattern(call.args[2], call.args[3])
        view = await call.admin.config(target)
        patterns = _patterns(view)
        if name not in patterns and len(patterns) >= MAX_PATTERNS:
            raise InvalidValue(
                f"{view.target.label} already has {MAX_PATTERNS} patterns, the most allowed: "
                "remove one first."
            )
        patterns[name] = regex
        return await set_values(call, target, "redact pattern add", {"redact_patterns": patterns})
    if verb == "remove":
        target = await pop_target(call, skip=3)
        if len(call.args) != 3:
            raise InvalidValue("Usage: `/candor redact pattern remove NAME [#channel]`")
        view = await call.admin.config(target)
        patterns = _patterns(view)
        if call.args[2] not in patterns:
            known = ", ".join(f"`{n}`" for n in sorted(patterns)) or "none"
            raise InvalidValue(
                f"{view.target.label} has no pattern `{call.args[2]}` (patterns: {known})."
            )
        del patterns[call.args[2]]
        return await set_values(
            call, target, "redact pattern remove", {"redact_patterns": patterns}
        )
    if verb == "list":
        target = await pop_target(call, skip=2)
        if len(call.args) != 2:
            raise InvalidValue("Usage: `/candor redact pattern list [#channel]`")
        view = await call.admin.config(target)
        return render_patterns(view, _patterns(view))
    raise InvalidValue(USAGE)


SUBCOMMANDS = (
    Subcommand(
        "redact",
        (
            "redact [#channel]",
            "redact secrets|pii on|off [#channel]",
            "redact pattern add NAME 'REGEX' [#channel]",
            "redact pattern remove|list [NAME] [#channel]",
        ),
        cmd_redact,
        "what is withheld from the language model",
    ),
)
