"""Candor's configuration: one `Settings` object, nested by concern.

Every field is read from the process environment and from a `.env` file in the working
directory. Which source wins: an environment variable always beats the `.env` file, which
beats the default written here (pydantic-settings' order for init > env > dotenv > default).

Operators rely on the flat, documented variable names (`SLACK_BOT_TOKEN`,
`OPENAI_BASE_URL`, `DATABASE_URL`, ...), so each group is its own `BaseSettings` with an
`env_prefix`, rather than one model with a nested delimiter. `.env.example` lists every
field with its default; `tests/test_settings.py` keeps the two in step.

Nothing here is created at import time: call `load_settings()` in the composition root
(`bot.cli.main`) and pass the result down.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError


class ConfigError(Exception):
    """A configuration problem, explained in one sentence an operator can act on."""


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )


class SlackSettings(BaseSettings):
    """Slack credentials and endpoint (`SLACK_*`)."""

    model_config = _config("SLACK_")

    bot_token: SecretStr | None = None
    app_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    # GovSlack and the tests point this somewhere else; keep the trailing slash.
    api_url: str = "https://slack.com/api/"
    # Where flagged answers are posted for review (a channel ID); empty disables it.
    review_channel: str = ""
    # Largest image Candor downloads from Slack and sends to a vision model.
    max_image_bytes: int = 5 * 1024 * 1024

    @field_validator("api_url")
    @classmethod
    def _slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"


class OpenAISettings(BaseSettings):
    """The OpenAI-compatible LLM endpoint (`OPENAI_*`)."""

    model_config = _config("OPENAI_")

    api_key: SecretStr | None = None
    # Any OpenAI-compatible server: vLLM, Ollama, llama.cpp, an Azure-compatible proxy.
    base_url: str | None = None
    # Timeout of one read (the client's); a server trickling tokens never trips it...
    timeout_seconds: float = 60.0
    # ...so this bounds a whole LLM call, streaming included; 0 turns the bound off.
    total_timeout_seconds: float = 120.0
    max_retries: int = 3
    embedding_model: str = "text-embedding-3-small"


class DatabaseSettings(BaseSettings):
    """Where Candor keeps its state (`DATABASE_URL`)."""

    model_config = _config("DATABASE_")

    # Empty means the embedded SQLite file `<CANDOR_DATA_DIR>/candor.db`.
    url: str = ""
    echo: bool = False
    # Postgres write transactions one process runs at once; more wait, first come first
    # served (bot.db.engine.Database.write; single statements that commit by themselves,
    # as the claim and the reservation, do not count). SQLite always runs one.
    writers: int = Field(default=4, ge=1, le=100)

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalize_database_url(value)


class QdrantSettings(BaseSettings):
    """The knowledge base's vector store (`QDRANT_*`)."""

    model_config = _config("QDRANT_")

    # A Qdrant server or cluster; empty means the embedded store under the data dir.
    url: str = ""
    api_key: SecretStr | None = None
    # Where the embedded store lives; empty means `<CANDOR_DATA_DIR>/qdrant`.
    path: str = ""
    collection: str = "candor"


class BudgetSettings(BaseSettings):
    """Per-user spend limits (`CANDOR_BUDGET_*`)."""

    model_config = _config("CANDOR_BUDGET_")

    # Default per-user budget per period in USD; 0 means unlimited.
    default_usd: float = 5.0
    period: Literal["daily", "weekly", "monthly"] = "monthly"
    timezone: str = "UTC"
    warn_at_fraction: float = Field(default=0.8, ge=0, le=1)
    # Price for models missing from the price table, USD per 1M tokens.
    unknown_model_input_usd_per_m: float = 10.0
    unknown_model_output_usd_per_m: float = 30.0

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str) -> str:
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone") from None
        return value.strip()


class CandorSettings(BaseSettings):
    """Candor's own behaviour (`CANDOR_*`)."""

    model_config = _config("CANDOR_")

    data_dir: Path = Path("./data")
    default_model: str = "gpt-4o-mini"
    default_temperature: float = Field(default=0.3, ge=0, le=2)
    max_answer_tokens: int = Field(default=1024, ge=1)
    default_system_message: str = (
        "You are Candor, a helpful assistant in the Slack channel {channel} of {workspace}. "
        "You are talking with {user}. Today is {date}. Answer concisely. "
        "When you are not sure, say so plainly."
    )
    # JSON object of model -> context window in tokens, merged over the built-in table.
    context_windows: dict[str, int] = Field(default_factory=dict)
    # Models admins may choose per channel (comma separated); empty allows any.
    allowed_models: str = ""
    # Extra admin user IDs (comma separated), beside Slack workspace admins and owners.
    admin_users: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Knowledge-base embedder: auto (hybrid OpenAI + sparse when talking to OpenAI itself,
    # else sparse), sparse (BM25, no model, offline), openai, hybrid, minilm, or
    # local-hybrid (MiniLM + sparse, offline; needs the minilm extra).
    kb_embedder: Literal["auto", "sparse", "openai", "hybrid", "minilm", "local-hybrid"] = "auto"
    # Processed-event claims (for exactly-once answers) are kept this many days.
    event_retention_days: int = 7
    # Conversation turns older than this are deleted daily; 0 keeps them forever.
    history_retention_days: int = 0
    # A claimed message still unanswered after this many minutes (its process died) is
    # reported in its thread and marked failed; longer than the slowest real answer.
    stale_claim_minutes: int = 10
    # Scheduled jobs (`candor jobs list`): five-field cron expressions in jobs_timezone, or
    # `off`. They run on one replica at a time, the one holding the database lease.
    jobs_enabled: bool = True
    jobs_timezone: str = "UTC"
    jobs_lease_seconds: int = Field(default=90, ge=10)
    jobs_tick_seconds: int = Field(default=20, ge=1)
    jobs_stale_claims_cron: str = "* * * * *"
    jobs_release_holds_cron: str = "*/5 * * * *"
    jobs_budget_alerts_cron: str = "*/15 * * * *"
    jobs_usage_digest_cron: str = "0 9 * * *"
    jobs_retention_cron: str = "30 3 * * *"
    jobs_kb_sync_cron: str = "0 * * * *"
    jobs_review_digest_cron: str = "0 9 * * mon"
    jobs_ask_human_reminders_cron: str = "*/10 * * * *"
    # An Ask a human still open after this many hours gets one reminder in its thread.
    ask_human_reminder_hours: float = Field(default=4.0, gt=0)
    # Channel ID for the daily usage digest; empty uses SLACK_REVIEW_CHANNEL.
    digest_channel: str = ""
    # Redaction before the LLM (`bot.redaction`); channels override the first two with
    # `/candor redact secrets|pii on|off`. Secrets: Slack tokens, provider API keys,
    # private keys, passwords in URLs. Personal data: emails, phone numbers, card numbers,
    # IBANs, national IDs. Knowledge: also redact documents when they are ingested.
    redact_secrets: bool = True
    redact_pii: bool = False
    redact_knowledge: bool = False

    # Log lines as text (for people) or json (one object per line, for log pipelines).
    log_format: Literal["text", "json"] = "text"
    # Include message text in logs (off: only ids, never what people wrote).
    log_content: bool = False
    # Socket Mode: port for /healthz, /readyz and /metrics (0 = none). HTTP mode serves
    # them on the Slack port.
    health_port: int = Field(default=0, ge=0, le=65535)
    # The event loop `candor serve` runs on: uvloop (libuv; less CPU per network event),
    # asyncio (the standard library's), or auto (uvloop when it is installed).
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    # How many replicas run (the deployment sets it). Above 1, DATABASE_URL must name
    # Postgres and QDRANT_URL a Qdrant server, or Candor refuses to start.
    replicas: int = Field(default=1, ge=1)

    # Tools (`bot.tools`): a JSON file of MCP servers ({"mcpServers": {...}}); empty = none.
    mcp_config: str = ""
    # MCP servers over HTTP on private or loopback addresses are refused unless this is true
    # (or the server sets allow_private_network in the file).
    mcp_allow_private_network: bool = False
    # Most LLM calls of one answer's tool loop (a channel may override: `tool_max_steps`).
    tool_max_steps: int = Field(default=5, ge=1, le=20)
    # Wall-clock seconds the tool loop may take before Candor answers with what it has.
    tool_deadline_seconds: float = Field(default=300.0, gt=0)
    # Seconds one tool call may run.
    tool_call_timeout_seconds: float = Field(default=30.0, gt=0)
    # Seconds a call with side effects waits for Approve before it counts as denied.
    tool_approval_timeout_seconds: float = Field(default=120.0, gt=0)

    @field_validator("default_model")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty")
        return value.strip()

    @field_validator(
        "jobs_stale_claims_cron",
        "jobs_release_holds_cron",
        "jobs_budget_alerts_cron",
        "jobs_usage_digest_cron",
        "jobs_retention_cron",
        "jobs_kb_sync_cron",
        "jobs_review_digest_cron",
        "jobs_ask_human_reminders_cron",
    )
    @classmethod
    def _cron(cls, value: str) -> str:
        value = " ".join(value.split())
        if value.lower() == "off":
            return "off"
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError:
            raise ValueError("not a cron expression") from None
        return value

    @field_validator("jobs_timezone")
    @classmethod
    def _jobs_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone") from None
        return value.strip()

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("context_windows")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        if any(tokens < 1 for tokens in value.values()):
            raise ValueError("context windows must be positive")
        return value

    def allowed_model_list(self) -> list[str]:
        return [m.strip() for m in self.allowed_models.split(",") if m.strip()]

    def admin_user_list(self) -> list[str]:
        return [u.strip() for u in self.admin_users.split(",") if u.strip()]


class Settings(BaseSettings):
    """All of Candor's settings, one group per concern."""

    model_config = SettingsConfigDict(extra="ignore")

    slack: SlackSettings = Field(default_factory=SlackSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    candor: CandorSettings = Field(default_factory=CandorSettings)

    @property
    def database_url(self) -> str:
        if self.db.url:
            return self.db.url
        return f"sqlite+aiosqlite:///{(self.candor.data_dir / 'candor.db').as_posix()}"

    @property
    def qdrant_path(self) -> Path:
        return Path(self.qdrant.path) if self.qdrant.path else self.candor.data_dir / "qdrant"

    #: Lines of the dotenv file that could not be read (each reported once by the CLI).
    _env_file_problems: list[EnvFileProblem] = PrivateAttr(default_factory=list)

    @property
    def env_file_problems(self) -> list[EnvFileProblem]:
        return list(self._env_file_problems)

    def require(self, *names: str) -> None:
        """Raise `ConfigError` naming the first missing secret among `names`."""
        lookup: dict[str, SecretStr | None] = {
            "SLACK_BOT_TOKEN": self.slack.bot_token,
            "SLACK_APP_TOKEN": self.slack.app_token,
            "SLACK_SIGNING_SECRET": self.slack.signing_secret,
            "OPENAI_API_KEY": self.openai.api_key,
        }
        for name in names:
            value = lookup[name]
            if value is not None and value.get_secret_value().strip():
                continue
            broken = next((p for p in self._env_file_problems if p.name == name), None)
            if broken is not None:
                # It *is* in the file; telling the operator to add it would send them astray.
                raise ConfigError(
                    f"{name} is not set: line {broken.line} of {broken.path} sets it, but "
                    f"{broken.reason}; fix that line."
                )
            if name == "OPENAI_API_KEY":
                raise ConfigError(
                    "OPENAI_API_KEY is not set: add it to your environment or to .env, or set "
                    "OPENAI_BASE_URL to an OpenAI-compatible server that needs no key "
                    "(`candor local-llm` runs one offline)."
                )
            raise ConfigError(
                f"{name} is not set: add it to your environment or to .env (see .env.example)."
            )


# --------------------------------------------------------------------------- loading

_PREFIXES: dict[type[BaseSettings], str] = {
    SlackSettings: "SLACK_",
    OpenAISettings: "OPENAI_",
    DatabaseSettings: "DATABASE_",
    QdrantSettings: "QDRANT_",
    BudgetSettings: "CANDOR_BUDGET_",
    CandorSettings: "CANDOR_",
}
_GROUPS: dict[str, type[BaseSettings]] = {
    "slack": SlackSettings,
    "openai": OpenAISettings,
    "db": DatabaseSettings,
    "qdrant": QdrantSettings,
    "budget": BudgetSettings,
    "candor": CandorSettings,
}

#: What a variable may hold, where the type alone does not say it well.
_ALLOWED: dict[str, str] = {
    "CANDOR_CONTEXT_WINDOWS": (
        'a JSON object of model name to context window in tokens, such as {"my-model": 32768}'
    ),
    "CANDOR_DEFAULT_TEMPERATURE": "a number from 0 to 2",
    "CANDOR_MAX_ANSWER_TOKENS": "a whole number of at least 1",
    "CANDOR_DEFAULT_MODEL": "a model name such as gpt-4o-mini, not empty",
    "CANDOR_BUDGET_TIMEZONE": "an IANA time zone such as UTC or Europe/Berlin",
    "CANDOR_JOBS_TIMEZONE": "an IANA time zone such as UTC or Europe/Berlin",
    **{
        f"CANDOR_JOBS_{job}_CRON": (
            "a five-field cron expression such as 0 9 * * * (minute hour day month weekday), or off"
        )
        for job in ("STALE_CLAIMS", "RELEASE_HOLDS", "BUDGET_ALERTS", "USAGE_DIGEST", "RETENTION")
    },
    "CANDOR_BUDGET_WARN_AT_FRACTION": "a number from 0 to 1",
    "DATABASE_URL": (
        "empty (the embedded SQLite file), postgresql+asyncpg://user:password@host:5432/candor "
        "or sqlite+aiosqlite:///path/to/candor.db"
    ),
}


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Read settings from the environment and `env_file`, explaining any bad value.

    A bad value raises `ConfigError` with one sentence naming the variable and what it
    may hold. Lines of `env_file` that cannot be parsed are skipped and listed in
    `Settings.env_file_problems` (python-dotenv's own warning, once per group, is muted).
    """
    problems = env_file_problems(env_file)
    groups: dict[str, Any] = {}
    with _quiet_dotenv():
        for key, group in _GROUPS.items():
            if key in overrides:
                continue
            try:
                groups[key] = group(_env_file=env_file)
            except ValidationError as exc:
                raise ConfigError(_explain(_PREFIXES[group], exc)) from None
            except SettingsError as exc:  # a complex value (JSON) that does not parse
                raise ConfigError(_explain_unparsed(_PREFIXES[group], exc)) from None
    groups.update(overrides)
    settings = Settings(**groups)
    settings._env_file_problems = problems
    return settings


def _explain(prefix: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = first.get("loc", ())
    name = (prefix + str(loc[0] if loc else "")).upper()
    allowed = _ALLOWED.get(name) or _allowed_by_type(first)
    return f"{name} has an invalid value: it must be {allowed}."


def _explain_unparsed(prefix: str, exc: SettingsError) -> str:
    found = re.search(r'field "(\w+)"', str(exc))
    name = (prefix + (found.group(1) if found else "")).upper()
    allowed = _ALLOWED.get(name, "valid JSON")
    return f"{name} has an invalid value: it must be {allowed}."


def _allowed_by_type(error: Any) -> str:
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind.startswith("float"):
        return "a number"
    if kind.startswith("int"):
        return "a whole number"
    if kind.startswith("bool"):
        return "true or false"
    if kind == "literal_error":
        return f"one of {ctx.get('expected', 'the documented values')}"
    if kind == "greater_than_equal":
        return f"at least {ctx.get('ge')}"
    if kind == "greater_than":
        return f"more than {ctx.get('gt')}"
    if kind == "less_than_equal":
        return f"at most {ctx.get('le')}"
    return "a value of the kind .env.example shows"


def normalize_database_url(url: str) -> str:
    """`DATABASE_URL` with an async driver: the plain forms people copy are mapped.

    `postgresql://` and `postgres://` become `postgresql+asyncpg://`, `sqlite:///` becomes
    `sqlite+aiosqlite:///`; any other scheme (or no URL shape at all) is a `ValueError`.
    """
    url = url.strip()
    if not url:
        return ""
    scheme, sep, rest = url.partition("://")
    if not sep or not rest:
        raise ValueError("not a URL")
    mapped = {
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
        "postgresql+asyncpg": "postgresql+asyncpg",
        "sqlite": "sqlite+aiosqlite",
        "sqlite+aiosqlite": "sqlite+aiosqlite",
    }.get(scheme.lower())
    if mapped is None:
        raise ValueError("unsupported driver")
    return f"{mapped}://{rest}"


# --------------------------------------------------------------------------- dotenv file


@dataclass(frozen=True)
class EnvFileProblem:
    """A line of the dotenv file that could not be read, so none of it took effect."""

    path: str
    line: int
    name: str | None
    reason: str

    def __str__(self) -> str:
        what = f" ({self.name})" if self.name else ""
        return (
            f"line {self.line} of {self.path}{what} could not be read because {self.reason}, "
            "so it is ignored"
        )


_ASSIGNMENT = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", re.S)


def env_file_problems(env_file: str | Path | None) -> list[EnvFileProblem]:
    """Parse `env_file` once, the way pydantic-settings will, and list its bad lines."""
    if env_file is None:
        return []
    path = Path(env_file)
    if not path.is_file():
        return []
    from dotenv.parser import parse_stream

    problems: list[EnvFileProblem] = []
    with path.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if not binding.error:
                continue
            text = binding.original.string
            found = _ASSIGNMENT.match(text)
            name = found.group(1).upper() if found else None
            value = found.group(2).strip() if found else ""
            if value[:1] in ("'", '"') and value[0] not in value[1:]:
                reason = "its quote is never closed"
            else:
                reason = "it is not NAME=value"
            problems.append(EnvFileProblem(str(env_file), binding.original.line, name, reason))
    return problems


class _DropDotenvParseWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "could not parse" not in record.getMessage()


@contextmanager
def _quiet_dotenv() -> Iterator[None]:
    """Mute python-dotenv's parse warning: each group reads the file, so it came six times."""
    logger = logging.getLogger("dotenv.main")
    muted = _DropDotenvParseWarnings()
    logger.addFilter(muted)
    try:
        yield
    finally:
        logger.removeFilter(muted)
