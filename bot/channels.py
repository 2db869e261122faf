"""Effective channel settings: the channel's row over the workspace default over `Settings`.

Settings live in the database, so a change takes effect on the next message on every
replica, without a restart. `EffectiveSettings.inherited` names the fields that came from
the workspace default (or from the environment), which `/candor config show` marks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.confidence import DEFAULT_FLAG_THRESHOLD
from bot.db import repo
from bot.db.models import DEFAULT_KEY, ChannelSettingsRow
from bot.settings import Settings

log = logging.getLogger(__name__)

#: Fields a channel can override, in the order `config show` lists them.
FIELDS = (
    "system_message",
    "temperature",
    "model",
    "max_answer_tokens",
    "enabled",
    "kb_scopes",
    "kb_top_k",
    "kb_score_floor",
    "tool_max_steps",
    "strict",
    "judge_model",
    "flag_threshold",
    "review_channel",
    "redact_secrets",
    "redact_pii",
    "redact_patterns",
    "image_model",
)

TEMPERATURE_MIN = 0.0
TEMPERATURE_MAX = 2.0
DEFAULT_TOP_K = 5
DEFAULT_SCORE_FLOOR = 0.0


@dataclass(frozen=True)
class EffectiveSettings:
    """What applies to one channel right now."""

    workspace_id: str
    channel_id: str
    system_message: str
    temperature: float
    model: str
    max_answer_tokens: int
    enabled: bool
    kb_scopes: tuple[str, ...]
    kb_top_k: int
    kb_score_floor: float
    #: Most LLM calls of one answer's tool-calling loop (1: no tools).
    tool_max_steps: int
    #: Where flagged and 👎 answers go for review; "" when nowhere.
    review_channel: str = ""
    #: No LLM call when no source clears the floor: "no source covers this" instead.
    strict: bool = False
    #: A cheap model asked "do the sources support this answer?" after each answer (None: off).
    judge_model: str | None = None
    #: Answers under this confidence are flagged.
    flag_threshold: float = DEFAULT_FLAG_THRESHOLD
    #: Redaction before the LLM (`bot.redaction`): secrets, personal data, and the
    #: admin's own patterns ({name: regex}; a channel's list replaces the default's).
    redact_secrets: bool = True
    redact_pii: bool = False
    redact_patterns: dict[str, str] = field(default_factory=dict)
    #: The model of the `generate_image` tool (None: no image generation here).
    image_model: str | None = None
    inherited: frozenset[str] = field(default_factory=frozenset)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}


def builtin_defaults(settings: Settings) -> dict[str, Any]:
    """Values used when neither the channel nor the workspace default sets a field."""
    return {
        "system_message": settings.candor.default_system_message,
        "temperature": settings.candor.default_temperature,
        "model": settings.candor.default_model,
        "max_answer_tokens": settings.candor.max_answer_tokens,
        "enabled": True,
        "kb_scopes": (),
        "kb_top_k": DEFAULT_TOP_K,
        "kb_score_floor": DEFAULT_SCORE_FLOOR,
        "tool_max_steps": settings.candor.tool_max_steps,
        "strict": False,
        "judge_model": None,
        "flag_threshold": DEFAULT_FLAG_THRESHOLD,
        "review_channel": settings.slack.review_channel,
        "redact_secrets": settings.candor.redact_secrets,
        "redact_pii": settings.candor.redact_pii,
        "redact_patterns": {},
        "image_model": None,
    }


def resolve(
    settings: Settings,
    default_row: ChannelSettingsRow,
    channel_row: ChannelSettingsRow | None,
    *,
    workspace_id: str,
    channel_id: str,
) -> EffectiveSettings:
    values = builtin_defaults(settings)
    inherited: set[str] = set()
    for name in FIELDS:
        own = getattr(channel_row, name) if channel_row is not None else None
        if own is not None:
            values[name] = own
            continue
        inherited.add(name)
        base = getattr(default_row, name)
        if base is not None:
            values[name] = base
    temperature = float(values["temperature"])
    if not TEMPERATURE_MIN <= temperature <= TEMPERATURE_MAX:
        log.warning(
            "Channel %s has temperature %s outside 0-2; using %s.",
            channel_id,
            temperature,
            settings.candor.default_temperature,
        )
        temperature = settings.candor.default_temperature
    return EffectiveSettings(
        workspace_id=workspace_id,
        channel_id=channel_id,
        system_message=str(values["system_message"]),
        temperature=temperature,
        model=str(values["model"]),
        max_answer_tokens=int(values["max_answer_tokens"]),
        enabled=bool(values["enabled"]),
        kb_scopes=tuple(values["kb_scopes"] or ()),
        kb_top_k=int(values["kb_top_k"]),
        kb_score_floor=float(values["kb_score_floor"]),
        tool_max_steps=int(values["tool_max_steps"]),
        strict=bool(values["strict"]),
        judge_model=_judge(values["judge_model"]),
        flag_threshold=float(values["flag_threshold"]),
        review_channel=str(values["review_channel"] or ""),
        redact_secrets=bool(values["redact_secrets"]),
        redact_pii=bool(values["redact_pii"]),
        redact_patterns={str(k): str(v) for k, v in dict(values["redact_patterns"]).items()},
        image_model=_judge(values["image_model"]),
        inherited=frozenset(inherited),
    )


def _judge(value: Any) -> str | None:
    """`off` (stored to switch off a judge or image model the workspace default turned on)
    means none."""
    name = str(value or "").strip()
    return None if not name or name.lower() == "off" else name


async def load_effective(
    session: AsyncSession, settings: Settings, *, workspace_id: str, channel_id: str
) -> EffectiveSettings:
    # One query for both rows: this runs for every answer.
    default_row, channel_row = await repo.get_settings_rows(
        session, workspace_id=workspace_id, channel_id=channel_id
    )
    if default_row is None:  # deleted by hand: a blank row, not stored (as get_default_row)
        default_row = ChannelSettingsRow(workspace_id=DEFAULT_KEY, channel_id=DEFAULT_KEY)
    return resolve(
        settings, default_row, channel_row, workspace_id=workspace_id, channel_id=channel_id
    )


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render_system_message(template: str, **values: str) -> str:
    """Fill `{channel}`, `{user}`, `{date}`...; unknown placeholders stay as written."""
    try:
        return template.format_map(_Blank(values))
    except (ValueError, IndexError, AttributeError, KeyError):
        # A stray brace in an admin's text must not break every answer in the channel.
        return template


def template_values(
    *, now: datetime, channel: str, user: str, workspace: str, model: str
) -> dict[str, str]:
    return {
        "channel": channel,
        "user": user,
        "workspace": workspace,
        "model": model,
        "date": now.strftime("%Y-%m-%d"),
        "time": now.strftime("%H:%M %Z").strip(),
        "weekday": now.strftime("%A"),
    }
