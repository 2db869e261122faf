"""Candor's configuration: one `Settings` object, nested by concern.

Every field is read from the process environment and from a `.env` file in the working
directory. Which source wins: an environment variable always beats the `.env` file, which
beats the default written here (pydantic-settings' order for init > env > dotenv > default).

Operators rely on the flat, documented variable names (`SLACK_BOT_TOKEN`,
`OPENAI_BASE_URL`, `DATABASE_URL`, ...), so each group is its own `BaseSettings` with an
`env_prefix`, rather than one model with a nested delimiter. `.env.example` lists every
field with its default; `tests/test_settings.py` keeps the two in step.

Nothing here is created at import time: call `load_settings()` in the composition root
(`bot.cli`) and pass the result down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    warn_at_fraction: float = 0.8
    # Price for models missing from the price table, USD per 1M tokens.
    unknown_model_input_usd_per_m: float = 10.0
    unknown_model_output_usd_per_m: float = 30.0


class CandorSettings(BaseSettings):
    """Candor's own behaviour (`CANDOR_*`)."""

    model_config = _config("CANDOR_")

    data_dir: Path = Path("./data")
    default_model: str = "gpt-4o-mini"
    default_temperature: float = 0.3
    max_answer_tokens: int = 1024
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
    log_level: str = "INFO"
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
            if value is None or not value.get_secret_value().strip():
                raise ConfigError(
                    f"{name} is not set: add it to your environment or to .env (see .env.example)."
                )


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Read settings from the environment and `env_file`, explaining any bad value."""
    try:
        groups: dict[str, Any] = {
            "slack": SlackSettings(_env_file=env_file),  # type: ignore[call-arg]
            "openai": OpenAISettings(_env_file=env_file),  # type: ignore[call-arg]
            "db": DatabaseSettings(_env_file=env_file),  # type: ignore[call-arg]
            "qdrant": QdrantSettings(_env_file=env_file),  # type: ignore[call-arg]
            "budget": BudgetSettings(_env_file=env_file),  # type: ignore[call-arg]
            "candor": CandorSettings(_env_file=env_file),  # type: ignore[call-arg]
        }
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    groups.update(overrides)
    return Settings(**groups)


def _explain(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ()))
    model = exc.title
    prefixes = {
        "SlackSettings": "SLACK_",
        "OpenAISettings": "OPENAI_",
        "DatabaseSettings": "DATABASE_",
        "QdrantSettings": "QDRANT_",
        "BudgetSettings": "CANDOR_BUDGET_",
        "CandorSettings": "CANDOR_",
    }
    name = (prefixes.get(model, "") + field).upper()
    return f"{name} has an invalid value: {first.get('msg', 'invalid')}."
