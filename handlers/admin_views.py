"""Block Kit and text for the admin surface: replies, modals and the App Home view.

Rendering only: every function takes values `bot.admin.service` computed and returns the text
or the Block Kit dict Slack shows. Nothing here reads the database or decides rights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.admin.audit import AuditEntry
from bot.admin.service import AdminList
from bot.admin.settings import (
    FIELD_LABELS,
    MAX_TOKENS_MAX,
    MAX_TOKENS_MIN,
    SYSTEM_MESSAGE_MAX_CHARS,
    TOP_K_MAX,
    TOP_K_MIN,
    Change,
    ConfigView,
    Target,
)
from bot.admin.spend import BudgetChange, describe_budget
from bot.channels import FIELDS
from bot.spend.budgets import format_usd
from bot.spend.prices import MICRO, ModelPrice
from bot.spend.report import UserSpend, format_usage_table

SYSTEM_MODAL = "candor_system_edit"
SETTINGS_MODAL = "candor_settings_edit"
HOME_EDIT_ACTION = "candor_home_edit"
VALUE_ACTION = "value"
#: The App Home lists at most this many channels (Slack allows 100 blocks per view).
HOME_MAX_CHANNELS = 40


def format_value(field: str, value: Any, *, short: bool = False) -> str:
    """A setting's value as an admin reads it."""
    if value is None:
        return "—"
    if field == "enabled":
        return "on" if value else "off"
    if field == "kb_scopes":
        return ", ".join(f"`{s}`" for s in value) if value else "none (channel's own)"
    if field == "review_channel":
        return f"<#{value}>" if value else "none"
    if field == "system_message":
        text = str(value)
        if short and len(text) > 80:
            text = text[:77] + "..."
        return f"“{text}”"
    if isinstance(value, float):
        return f"{value:g}"
    return f"`{value}`"


def _source_note(view: ConfigView, field: str) -> str:
    source = view.sources[field]
    if view.target.is_default:
        return "" if source == "workspace default" else "  _(built-in)_"
    if source == "channel":
        return ""
    return "  _(inherited from workspace default)_"


def render_config(view: ConfigView) -> str:
    """`config show`: every field, marking the ones the target inherits."""
    lines = [f"*Settings for {view.target.label}*"]
    for field in FIELDS:
        value = format_value(field, view.values[field], short=True)
        lines.append(f"• {FIELD_LABELS[field]}: {value}{_source_note(view, field)}")
    if not view.target.is_default:
        lines.append(
            "Change one with e.g. `/candor temperature 0.5`; undo with `/candor reset FIELD`."
        )
    return "\n".join(lines)


def render_system(view: ConfigView) -> str:
    note = _source_note(view, "system_message").strip()
    text = str(view.values["system_message"])
    return f"*System message for {view.target.label}* {note}\n```{text}```"


def render_change(change: Change) -> str:
    """What a change did, with its warnings."""
    if not change.changed:
        lines = [f"Nothing to change: {change.target.label} already has that."]
    else:
        parts = []
        for field, after in change.after.items():
            before = change.before.get(field)
            label = FIELD_LABELS.get(field, field)
            if after is None:
                parts.append(
                    f"{label} now inherits (was {format_value(field, before, short=True)})"
                )
            else:
                parts.append(
                    f"{label}: {format_value(field, before, short=True)} → "
                    f"{format_value(field, after, short=True)}"
                )
        lines = [f":white_check_mark: {change.target.label}: " + "; ".join(parts) + "."]
        lines.append("It applies from the next message.")
    lines.extend(change.warnings)
    return "\n".join(lines)


def render_audit(entries: Sequence[AuditEntry]) -> str:
    if not entries:
        return "The audit log is empty: no admin has changed anything yet."
    lines = [f"*Latest {len(entries)} admin changes* (newest first)"]
    for entry in entries:
        when = entry.created_at.strftime("%Y-%m-%d %H:%M UTC")
        target = "workspace default" if entry.target == "default" else entry.target
        if target.startswith(("C", "G", "D")):
            target = f"<#{target}>"
        elif target.startswith(("U", "W")):
            target = f"<@{target}>"
        lines.append(
            f"• {when} <@{entry.actor_id}> `{entry.action}` on {target}: "
            f"`{json.dumps(entry.before)}` → `{json.dumps(entry.after)}`"
        )
    return "\n".join(lines)


def render_admins(admins: AdminList) -> str:
    lines = ["*Candor admins*: Slack workspace admins and owners, plus:"]
    env = ", ".join(f"<@{u}>" for u in admins.from_environment) or "nobody"
    stored = ", ".join(f"<@{u}>" for u in admins.from_database) or "nobody"
    lines.append(f"• from CANDOR_ADMIN_USERS: {env}")
    lines.append(f"• added with `/candor admins add`: {stored}")
    return "\n".join(lines)


def render_budget_change(change: BudgetChange) -> str:
    who = "The default budget" if change.user_id == "*" else f"<@{change.user_id}>'s budget"
    return (
        f":white_check_mark: {who}: {describe_budget(change.before)} → "
        f"{describe_budget(change.after)}."
    )


def _per_m(micro: int) -> str:
    return f"${micro / MICRO:g}"


def render_prices(rows: Sequence[ModelPrice]) -> str:
    if not rows:
        return "No prices are known yet."
    lines = ["*Prices* (USD per 1M tokens: input / cached input / output)"]
    for price in rows:
        note = "  _(admin override)_" if price.source == "override" else f"  _({price.origin})_"
        lines.append(
            f"• `{price.model}`: {_per_m(price.input_micro_usd_per_m)} / "
            f"{_per_m(price.cached_input_micro_usd_per_m)} / {_per_m(price.output_micro_usd_per_m)}{note}"
        )
    return "\n".join(lines)


def render_price_set(price: ModelPrice) -> str:
    return (
        f":white_check_mark: `{price.model}` now costs {_per_m(price.input_micro_usd_per_m)} input, "
        f"{_per_m(price.cached_input_micro_usd_per_m)} cached input and "
        f"{_per_m(price.output_micro_usd_per_m)} output per 1M tokens, from the next call."
    )


def render_top_users(rows: Sequence[UserSpend], period: str) -> str:
    if not rows:
        return f"Nobody has spent anything this {period} yet."
    total = format_usd(sum(r.spent_micro_usd for r in rows))
    return f"*Top users this {period}* (total {total})\n```{format_usage_table(rows)}```"


# --- modals -------------------------------------------------------------------------------


def target_metadata(target: Target, *, origin: str) -> str:
    """`private_metadata`: which row a modal edits, and where it was opened from."""
    return json.dumps({"w": target.workspace_id, "c": target.channel_id, "o": origin})


def parse_metadata(raw: str) -> tuple[Target, str]:
    data = json.loads(raw or "{}")
    return Target(str(data["w"]), str(data["c"])), str(data.get("o", ""))


def _text_input(
    block_id: str,
    label: str,
    initial: str | None,
    *,
    hint: str = "",
    multiline: bool = False,
    optional: bool = True,
) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": VALUE_ACTION}
    if multiline:
        element["multiline"] = True
        element["max_length"] = SYSTEM_MESSAGE_MAX_CHARS
    if initial:
        element["initial_value"] = initial
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": {"type": "plain_text", "text": label},
        "element": element,
    }
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint[:2000]}
    return block


def _modal(
    callback_id: str, title: str, metadata: str, blocks: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": {"type": "plain_text", "text": title[:24]},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": metadata,
        "blocks": blocks,
    }


def system_modal(view: ConfigView, *, origin: str) -> dict[str, Any]:
    """The long-text editor for one target's system message."""
    current = str(view.values["system_message"])[:SYSTEM_MESSAGE_MAX_CHARS]
    intro = (
        f"System message for {view.target.label}. Placeholders: `{{channel}}`, `{{user}}`, "
        "`{date}`, `{time}`, `{weekday}`, `{workspace}`, `{model}`."
    )
    blocks = [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": intro}]},
        _text_input("system_message", "System message", current, multiline=True, optional=False),
    ]
    return _modal(
        SYSTEM_MODAL, "System message", target_metadata(view.target, origin=origin), blocks
    )


def settings_modal(
    view: ConfigView, *, allowed_models: Sequence[str], origin: str
) -> dict[str, Any]:
    """Every setting of one target; a blank field inherits."""
    inherit = "the built-in value" if view.target.is_default else "the workspace default"
    models = f"Allowed: {', '.join(allowed_models)}." if allowed_models else "Any model name."

    def own(field: str) -> str | None:
        value = view.own(field)
        if value is None:
            return None
        if field == "kb_scopes":
            return ",".join(value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    def hint(field: str, allowed: str) -> str:
        now = format_value(field, view.values[field], short=True)
        return f"{allowed} Blank: use {inherit} (now {now})."

    enabled_options = [
        _option("inherit", f"Inherit ({inherit})"),
        _option("on", "On"),
        _option("off", "Off"),
    ]
    own_enabled = view.own("enabled")
    enabled_initial = (
        enabled_options[0] if own_enabled is None else enabled_options[1 if own_enabled else 2]
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"Settings for {view.target.label}."}],
        },
        _text_input(
            "system_message",
            "System message",
            own("system_message"),
            multiline=True,
            hint=f"Blank: use {inherit}.",
        ),
        _text_input(
            "temperature", "Temperature", own("temperature"), hint=hint("temperature", "0 to 2.")
        ),
        _text_input("model", "Model", own("model"), hint=hint("model", models)),
        _text_input(
            "max_answer_tokens",
            "Max answer tokens",
            own("max_answer_tokens"),
            hint=hint("max_answer_tokens", f"{MAX_TOKENS_MIN} to {MAX_TOKENS_MAX}."),
        ),
        {
            "type": "input",
            "block_id": "enabled",
            "optional": True,
            "label": {"type": "plain_text", "text": "Candor answers here"},
            "element": {
                "type": "static_select",
                "action_id": VALUE_ACTION,
                "options": enabled_options,
                "initial_option": enabled_initial,
            },
        },
        _text_input(
            "kb_scopes",
            "Knowledge scopes",
            own("kb_scopes"),
            hint=hint("kb_scopes", "`workspace`, `channel:C123`, comma separated."),
        ),
        _text_input(
            "kb_top_k",
            "Knowledge top-k",
            own("kb_top_k"),
            hint=hint("kb_top_k", f"{TOP_K_MIN} to {TOP_K_MAX}."),
        ),
        _text_input(
            "kb_score_floor",
            "Knowledge score floor",
            own("kb_score_floor"),
            hint=hint("kb_score_floor", "0 to 1."),
        ),
    ]
    return _modal(
        SETTINGS_MODAL, "Candor settings", target_metadata(view.target, origin=origin), blocks
    )


def _option(value: str, text: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def submitted_values(view_payload: dict[str, Any]) -> dict[str, str | None]:
    """block_id -> the text (or selected option value) a modal was submitted with."""
    out: dict[str, str | None] = {}
    state = view_payload.get("state", {}).get("values", {})
    for block_id, actions in state.items():
        element = actions.get(VALUE_ACTION, {})
        if element.get("type") == "static_select" or "selected_option" in element:
            selected = element.get("selected_option") or {}
            out[block_id] = selected.get("value")
        else:
            out[block_id] = element.get("value")
    return out


# --- App Home -----------------------------------------------------------------------------


def home_view(
    *,
    is_admin: bool,
    spend_lines: Sequence[str],
    defaults: ConfigView | None,
    overrides: Sequence[ConfigView],
) -> dict[str, Any]:
    """The App Home tab: how to use Candor for everyone; settings for admins."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Candor"}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": (
                    "Candor answers questions from your team's own knowledge, says plainly when "
                    "it is not sure, and keeps your token spend in view."
                ),
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": (
                    "*How to use it*\n• Mention `@Candor` in a channel, or send it a direct message.\n"
                    "• Reply in the thread to keep the conversation going; Candor remembers the thread.\n"
                    "• Answers cite their sources as [1], [2]; a warning means: check with a human.\n"
                    "• `/candor usage` shows your spend this period."
                ),
            },
        },
    ]
    if spend_lines:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(spend_lines)}}
        )
    if not is_admin:
        return {"type": "home", "blocks": blocks}
    blocks.append({"type": "divider"})
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Admin: settings"}})
    if defaults is not None:
        summary = "\n".join(
            f"• {FIELD_LABELS[f]}: {format_value(f, defaults.values[f], short=True)}"
            for f in FIELDS
        )
        blocks.append(
            {
                "type": "section",
                "block_id": "home_defaults",
                "text": {"type": "mrkdwn", "text": f"*Workspace defaults*\n{summary}"},
                "accessory": _edit_button("Edit defaults", "*"),
            }
        )
    if overrides:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "*Channels with their own settings*"},
            }
        )
        for view in overrides[:HOME_MAX_CHANNELS]:
            parts = [
                f"{FIELD_LABELS[f]} {format_value(f, view.values[f], short=True)}"
                for f in view.overridden
            ]
            blocks.append(
                {
                    "type": "section",
                    "block_id": f"home_channel_{view.target.channel_id}",
                    "text": {"type": "mrkdwn", "text": f"{view.target.label}: " + "; ".join(parts)},
                    "accessory": _edit_button("Edit", view.target.channel_id),
                }
            )
        if len(overrides) > HOME_MAX_CHANNELS:
            more = len(overrides) - HOME_MAX_CHANNELS
            blocks.append(_context(f"…and {more} more; use `/candor config show #channel`."))
    else:
        blocks.append(_context("No channel has its own settings; every channel uses the defaults."))
    blocks.append(_context("Everything here is also available with `/candor help`."))
    return {"type": "home", "blocks": blocks}


def _edit_button(text: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": HOME_EDIT_ACTION,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}
