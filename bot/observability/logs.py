"""Log lines for machines: `CANDOR_LOG_FORMAT=json` writes one JSON object per line.

Each object has `ts`, `level`, `logger` and `event` (the log message), plus the ids of the
Slack request being handled when there is one: `event_id`, `channel`, `user`, `answer_id`
(set with `log_context(...)` at the edge, carried by a context variable into every task
the request starts). A traceback, when logged, is one `exc` string.

What never appears: the configured secrets (Slack tokens and signing secret, the OpenAI and
Qdrant keys, the database password), nor anything shaped like a Slack or OpenAI token;
they are replaced by `[redacted]` in every field. Message text is left out unless
`CANDOR_LOG_CONTENT=1`: a record's `content` extra is only written then.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bot.settings import Settings

_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "candor_log_context", default=None
)
_ID_FIELDS = ("event_id", "channel", "user", "answer_id")
_TOKEN_SHAPES = re.compile(
    r"(xox[abposr]-[A-Za-z0-9-]{6,}|xapp-[A-Za-z0-9-]{6,}|sk-[A-Za-z0-9_-]{8,})"
)
REDACTED = "[redacted]"


def set_log_context(**ids: str | int | None) -> contextvars.Token[dict[str, str] | None]:
    """Add ids to the current context (tasks started afterwards inherit them)."""
    merged = dict(_CONTEXT.get() or {})
    merged.update({k: str(v) for k, v in ids.items() if v is not None and k in _ID_FIELDS})
    return _CONTEXT.set(merged)


@contextmanager
def log_context(**ids: str | int | None) -> Iterator[None]:
    """Within the block (and tasks it starts), log lines carry these ids."""
    token = set_log_context(**ids)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def secrets_of(settings: Settings) -> list[str]:
    """Every configured secret value, longest first (so a prefix never hides a longer one)."""
    values = [
        settings.slack.bot_token,
        settings.slack.app_token,
        settings.slack.signing_secret,
        settings.openai.api_key,
        settings.qdrant.api_key,
    ]
    found = [v.get_secret_value() for v in values if v is not None]
    if settings.db.url:
        from sqlalchemy import make_url

        try:
            password = make_url(settings.db.url).password
        except Exception:
            password = None
        if password:
            found.append(str(password))
    return sorted({v for v in found if len(v) >= 4}, key=len, reverse=True)


class Redactor:
    """Replaces secrets and token-shaped strings with `[redacted]`."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return _TOKEN_SHAPES.sub(REDACTED, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; see the module docstring."""

    def __init__(self, redact: Redactor, *, content: bool = False) -> None:
        super().__init__()
        self.redact = redact
        self.content = content

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": self.redact(record.getMessage()),
        }
        line.update(_CONTEXT.get() or {})
        for name in _ID_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = self.redact(str(value))
        content = getattr(record, "content", None)
        if self.content and content is not None:
            line["content"] = self.redact(str(content))
        if record.exc_info:
            line["exc"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    """The plain text format, with the same redaction."""

    def __init__(self, fmt: str, redact: Redactor) -> None:
        super().__init__(fmt)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def json_handler(settings: Settings) -> logging.Handler:
    """A stderr handler writing JSON lines for `settings` (secrets redacted)."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter(Redactor(secrets_of(settings)), content=settings.candor.log_content)
    )
    return handler
