"""Validating and changing channel settings on an admin's behalf. No Slack here.

Every value an admin types goes through one `parse_*` function, which either returns
the typed value or raises `InvalidValue` whose `user_message` says what is allowed; a
refused value never reaches the database. `apply_change` writes the new value and its
audit row in the caller's transaction, so the next message (on any replica) uses it.

A `Target` is one channel of a workspace, or the workspace default (the `('*', '*')`
row of `channel_settings`). On a channel, clearing a field means "inherit from the
workspace default"; on the default, it means "use the value from the environment".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from bot import channels, redaction
from bot.admin import audit
from bot.db import repo
from bot.db.models import DEFAULT_KEY, ChannelSettingsRow
from bot.errors import CandorError
from bot.llm import is_reasoning_model
from bot.settings import Settings

MAX_TOKENS_MIN = 1
MAX_TOKENS_MAX = 32000
TOP_K_MIN = 1
TOP_K_MAX = 20
FLOOR_MIN = 0.0
FLOOR_MAX = 1.0
#: Slack modal text inputs hold at most 3,000 characters; one limit for every surface.
SYSTEM_MESSAGE_MAX_CHARS = 3000
MODEL_NAME_MAX_CHARS = 128

#: The names admins type (`/candor reset #eng max-tokens`) -> the column they mean.
FIELD_ALIASES: dict[str, str] = {
    "system": "system_message",
    "system-message": "system_message",
    "prompt": "system_message",
    "temperature": "temperature",
    "temp": "temperature",
    "model": "model",
    "max-tokens": "max_answer_tokens",
    "enabled": "enabled",
    "enable": "enabled",
    "kb-scopes": "kb_scopes",
    "scopes": "kb_scopes",
    "kb-top-k": "kb_top_k",
    "top-k": "kb_top_k",
    "kb-floor": "kb_score_floor",
    "floor": "kb_score_floor",
    "tool-steps": "tool_max_steps",
    "tool-max-steps": "tool_max_steps",
    "strict": "strict",
    "judge": "judge_model",
    "judge-model": "judge_model",
    "flag-threshold": "flag_threshold",
    "threshold": "flag_threshold",
    "review-channel": "review_channel",
    "review": "review_channel",
    "redact-secrets": "redact_secrets",
    "redact-pii": "redact_pii",
    "redact-patterns": "redact_patterns",
    "image-model": "image_model",
    "images": "image_model",
}
#: How each field is named back to admins.
FIELD_LABELS: dict[str, str] = {
    "system_message": "system",
    "temperature": "temperature",
    "model": "model",
    "max_answer_tokens": "max-tokens",
    "enabled": "enabled",
    "kb_scopes": "kb-scopes",
    "kb_top_k": "kb-top-k",
    "kb_score_floor": "kb-floor",
    "tool_max_steps": "tool-steps",
    "strict": "strict",
    "judge_model": "judge",
    "flag_threshold": "flag-threshold",
    "review_channel": "review-channel",
    "redact_secrets": "redact-secrets",
    "redact_pii": "redact-pii",
    "redact_patterns": "redact-patterns",
    "image_model": "image-model",
}
_REVIEW_CHANNEL = re.compile(r"^(?:<#)?([CG][A-Z0-9]{2,31})(?:\|[^>]*)?>?$")
_SCOPE_KEY = re.compile(r"^(workspace|channel:[A-Z0-9]{2,32})$")

Source = Literal["channel", "workspace default", "built-in"]


class InvalidValue(CandorError):
    """An admin typed a value Candor does not accept; `user_message` says what is allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_message=message)


@dataclass(frozen=True)
class Target:
    """The settings row a command changes: one channel, or the workspace default."""

    workspace_id: str
    channel_id: str

    @classmethod
    def default(cls, workspace_id: str) -> Target:
        """The workspace-default row, named from `workspace_id` (for the audit log)."""
        return cls(workspace_id, DEFAULT_KEY)

    @property
    def is_default(self) -> bool:
        return self.channel_id == DEFAULT_KEY

    @property
    def label(self) -> str:
        """How replies name the target (a Slack channel mention, or the default)."""
        return "the workspace default" if self.is_default else f"<#{self.channel_id}>"

    @property
    def key(self) -> str:
        """How the audit log names the target."""
        return "default" if self.is_default else self.channel_id


@dataclass(frozen=True)
class Change:
    """What one change did, for the reply and the audit log."""

    target: Target
    action: str
    before: dict[str, Any]
    after: dict[str, Any]
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class ConfigView:
    """Effective settings of a target, with where each value comes from."""

    target: Target
    values: dict[str, Any]
    sources: dict[str, Source]

    def own(self, field: str) -> Any:
        """The value set on the target itself (None when it inherits)."""
        level: Source = "workspace default" if self.target.is_default else "channel"
        return self.values[field] if self.sources[field] == level else None

    @property
    def overridden(self) -> list[str]:
        """Fields set on the target itself, in `FIELDS` order."""
        return [name for name in channels.FIELDS if self.own(name) is not None]


# --- parsing: one function per field, each naming what is allowed -----------------------


def field_name(raw: str) -> str:
    """The column an admin means by `raw` (`max-tokens`, `kb-floor`, ...)."""
    name = raw.strip().lower()
    if name in FIELD_ALIASES:
        return FIELD_ALIASES[name]
    if name in channels.FIELDS:
        return name
    allowed = ", ".join(FIELD_LABELS[f] for f in channels.FIELDS)
    raise InvalidValue(f"`{raw}` is not a setting. Settings are: {allowed} (or `all`).")


def parse_temperature(raw: str) -> float:
    low, high = channels.TEMPERATURE_MIN, channels.TEMPERATURE_MAX
    message = f"Temperature must be a number from {low:g} to {high:g} (for example 0.7)."
    try:
        value = float(raw)
    except ValueError:
        raise InvalidValue(message) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidValue(message)
    return value


def parse_model(raw: str, settings: Settings) -> str:
    name = raw.strip()
    allowed = settings.candor.allowed_model_list()
    if not name:
        raise InvalidValue("Give a model name, for example `/candor model gpt-4o-mini`.")
    if len(name) > MODEL_NAME_MAX_CHARS or any(c.isspace() for c in name):
        raise InvalidValue(
            f"A model name is one word of at most {MODEL_NAME_MAX_CHARS} characters."
        )
    if allowed and name not in allowed:
        raise InvalidValue(f"`{name}` is not an allowed model. Allowed: {', '.join(allowed)}.")
    return name


def parse_int(raw: str, *, low: int, high: int, what: str) -> int:
    message = f"{what} must be a whole number from {low} to {high}."
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidValue(message) from None
    if not low <= value <= high:
        raise InvalidValue(message)
    return value


def parse_max_tokens(raw: str) -> int:
    return parse_int(raw, low=MAX_TOKENS_MIN, high=MAX_TOKENS_MAX, what="Max tokens")


def parse_top_k(raw: str) -> int:
    return parse_int(raw, low=TOP_K_MIN, high=TOP_K_MAX, what="Top-k")


def parse_score_floor(raw: str) -> float:
    message = (
        f"The score floor must be a number from {FLOOR_MIN:g} to {FLOOR_MAX:g} (for example 0.35)."
    )
    try:
        value = float(raw)
    except ValueError:
        raise InvalidValue(message) from None
    if not math.isfinite(value) or not FLOOR_MIN <= value <= FLOOR_MAX:
        raise InvalidValue(message)
    return value


def parse_system_message(text: str) -> str:
    value = text.strip()
    if not value:
        raise InvalidValue(
            'The system message cannot be empty: use `/candor system set "text"`, '
            "or `/candor system reset` to inherit the default."
        )
    if len(value) > SYSTEM_MESSAGE_MAX_CHARS:
        raise InvalidValue(
            f"The system message is {len(value)} characters; the limit is {SYSTEM_MESSAGE_MAX_CHARS}."
        )
    return value


def parse_scopes(items: Sequence[str]) -> list[str]:
    """Scope keys from `workspace,channel:C123 channel:C456` (commas or spaces)."""
    keys: list[str] = []
    for item in items:
        for part in item.split(","):
            key = part.strip()
            if not key:
                continue
            if key.lower() == "workspace":
                key = "workspace"
            if not _SCOPE_KEY.match(key):
                raise InvalidValue(
                    f"`{key}` is not a knowledge scope. Use `workspace` or `channel:<ID>` "
                    "(for example `workspace,channel:C0123ABC`)."
                )
            if key not in keys:
                keys.append(key)
    if not keys:
        raise InvalidValue(
            "Give at least one scope: `workspace` or `channel:<ID>`, separated by commas."
        )
    return keys


def scope_warnings(target: Target, scopes: Sequence[str]) -> tuple[str, ...]:
    """Warn when a channel will show another channel's (possibly private) knowledge."""
    warnings = []
    for key in scopes:
        if not key.startswith("channel:"):
            continue
        other = key.split(":", 1)[1]
        if other == target.channel_id:
            continue
        where = (
            "every channel that inherits the workspace default"
            if target.is_default
            else (f"members of {target.label}")
        )
        warnings.append(
            f":warning: {where} will see knowledge ingested from <#{other}>, "
            "even if that channel is private."
        )
    return tuple(warnings)


def parse_enabled(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("on", "true", "yes", "enabled", "enable", "1"):
        return True
    if value in ("off", "false", "no", "disabled", "disable", "0"):
        return False
    raise InvalidValue("Enabled must be `on` or `off`.")


def parse_review_channel(raw: str) -> str:
    """A channel ID from `<#C123|name>` or `C123`: where flagged and 👎 answers go."""
    match = _REVIEW_CHANNEL.match(raw.strip())
    if match is None:
        raise InvalidValue(
            "The review channel must be a channel: pick it from Slack's #-autocomplete "
            "or give its ID (for example `C0123ABCD`)."
        )
    return match.group(1)


def parse_strict(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise InvalidValue("Strict mode must be `on` or `off`.")


def parse_judge(raw: str, settings: Settings) -> str:
    """A judge model name, or `off` (stored as is: it overrides a workspace default)."""
    if raw.strip().lower() in ("off", "none", "no", "false"):
        return "off"
    return parse_model(raw, settings)


def parse_flag_threshold(raw: str) -> float:
    message = "The flag threshold must be a number from 0 to 1 (for example 0.5)."
    try:
        value = float(raw)
    except ValueError:
        raise InvalidValue(message) from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidValue(message)
    return value


TOOL_STEPS_MIN = 1
TOOL_STEPS_MAX = 20


def parse_tool_steps(raw: str) -> int:
    """Most LLM calls of one answer's tool loop (1 turns tools off in practice)."""
    return parse_int(raw, low=TOOL_STEPS_MIN, high=TOOL_STEPS_MAX, what="Tool steps")


def parse_redact_switch(raw: str, what: str) -> bool:
    """`on` or `off` for `/candor redact secrets|pii`."""
    value = raw.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise InvalidValue(f"Redaction of {what} must be `on` or `off`.")


def parse_redact_pattern(name: str, regex: str) -> tuple[str, str]:
    """An admin's redaction pattern, checked by `bot.redaction` (one sentence when refused)."""
    try:
        return redaction.parse_name(name), redaction.check_regex(regex)
    except redaction.InvalidPattern as exc:
        raise InvalidValue(exc.user_message) from None


_IMAGE_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


def parse_image_model(raw: str) -> str:
    """The model of the `generate_image` tool, or `off` (stored: it overrides a default)."""
    value = raw.strip()
    if value.lower() in ("off", "none", "no", "false"):
        return "off"
    if not _IMAGE_MODEL.match(value):
        raise InvalidValue("The image model must be a model name such as `gpt-image-1`, or `off`.")
    return value


def parse_value(field: str, raw: str, settings: Settings) -> Any:
    """Parse `raw` for any field (used by modals, where every input is text)."""
    if field == "system_message":
        return parse_system_message(raw)
    if field == "temperature":
        return parse_temperature(raw)
    if field == "model":
        return parse_model(raw, settings)
    if field == "max_answer_tokens":
        return parse_max_tokens(raw)
    if field == "enabled":
        return parse_enabled(raw)
    if field == "kb_scopes":
        return parse_scopes([raw])
    if field == "kb_top_k":
        return parse_top_k(raw)
    if field == "kb_score_floor":
        return parse_score_floor(raw)
    if field == "tool_max_steps":
        return parse_tool_steps(raw)
    if field == "strict":
        return parse_strict(raw)
    if field == "judge_model":
        return parse_judge(raw, settings)
    if field == "flag_threshold":
        return parse_flag_threshold(raw)
    if field == "review_channel":
        return parse_review_channel(raw)
    if field == "redact_secrets":
        return parse_redact_switch(raw, "secrets")
    if field == "redact_pii":
        return parse_redact_switch(raw, "personal data")
    if field == "image_model":
        return parse_image_model(raw)
    raise InvalidValue(f"`{field}` is not a setting.")


# --- reading ------------------------------------------------------------------------------


async def _rows(
    session: AsyncSession, target: Target
) -> tuple[ChannelSettingsRow, ChannelSettingsRow | None]:
    default_row = await repo.get_default_row(session)
    if target.is_default:
        return default_row, None
    channel_row = await repo.get_channel_row(
        session, workspace_id=target.workspace_id, channel_id=target.channel_id
    )
    return default_row, channel_row


async def config_view(session: AsyncSession, settings: Settings, target: Target) -> ConfigView:
    """What applies to `target` now, and which level each value comes from."""
    default_row, channel_row = await _rows(session, target)
    eff = channels.resolve(
        settings,
        default_row,
        channel_row,
        workspace_id=target.workspace_id,
        channel_id=target.channel_id,
    )
    sources: dict[str, Source] = {}
    for name in channels.FIELDS:
        if name not in eff.inherited:
            sources[name] = "channel"
        elif getattr(default_row, name) is not None:
            sources[name] = "workspace default"
        else:
            sources[name] = "built-in"
    return ConfigView(target=target, values=eff.as_dict(), sources=sources)


# --- writing ------------------------------------------------------------------------------


async def apply_change(
    session: AsyncSession,
    settings: Settings,
    *,
    target: Target,
    values: dict[str, Any],
    action: str,
    actor_id: str,
    now: datetime,
) -> Change:
    """Set (or, with None, clear) `values` on `target`'s row and write the audit row.

    Validation that depends on the other settings of the target (temperature on a
    reasoning model) happens here, before anything is written.
    """
    view = await config_view(session, settings, target)
    warnings: list[str] = []
    if values.get("temperature") is not None:
        model = str(values.get("model") or view.values["model"])
        if is_reasoning_model(model):
            raise InvalidValue(
                f"Temperature cannot be set for {target.label}: its model `{model}` is a "
                "reasoning model, which does not accept a temperature."
            )
    new_model = values.get("model")
    if new_model is not None and is_reasoning_model(str(new_model)):
        if view.sources["temperature"] == "channel" or (
            target.is_default and view.sources["temperature"] == "workspace default"
        ):
            warnings.append(
                f"Note: `{new_model}` is a reasoning model, so the temperature "
                f"{view.values['temperature']:g} of {target.label} will be ignored."
            )
    if values.get("kb_scopes"):
        warnings.extend(scope_warnings(target, values["kb_scopes"]))

    row = await repo.get_or_create_channel_row(
        session, workspace_id=target.workspace_id, channel_id=target.channel_id, now=now
    )
    # Only fields whose value really changes are written and audited; a no-op is no change.
    before = {
        name: _plain(getattr(row, name))
        for name, value in values.items()
        if _plain(getattr(row, name)) != _plain(value)
    }
    after = {name: _plain(values[name]) for name in before}
    change = Change(
        target=target, action=action, before=before, after=after, warnings=tuple(warnings)
    )
    if not before:
        return change
    for name in before:
        setattr(row, name, values[name])
    row.updated_at = now
    row.updated_by = actor_id
    await session.flush()
    await audit.record(
        session,
        workspace_id=target.workspace_id,
        actor_id=actor_id,
        action=action,
        target=target.key,
        before=before,
        after=after,
        when=now,
    )
    return change


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value
