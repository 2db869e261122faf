"""Settings: names operators rely on, clear errors, and `.env.example` kept complete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.settings import (
    BudgetSettings,
    CandorSettings,
    ConfigError,
    DatabaseSettings,
    OpenAISettings,
    QdrantSettings,
    SlackSettings,
    load_settings,
)

ROOT = Path(__file__).resolve().parent.parent
GROUPS = [
    SlackSettings,
    OpenAISettings,
    DatabaseSettings,
    QdrantSettings,
    BudgetSettings,
    CandorSettings,
]


def all_variable_names() -> set[str]:
    names = set()
    for group in GROUPS:
        prefix = group.model_config.get("env_prefix", "")
        names |= {f"{prefix}{field}".upper() for field in group.model_fields}
    return names


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    assert listed == all_variable_names()


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted(n for n in all_variable_names() if f"`{n}`" not in readme)
    assert missing == []


def test_documented_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8081/v1")
    monkeypatch.setenv("CANDOR_DEFAULT_MODEL", "gemma3-270m")
    monkeypatch.setenv("QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("CANDOR_DATA_DIR", "/srv/candor")
    settings = load_settings(None)
    assert settings.slack.bot_token is not None
    assert settings.slack.bot_token.get_secret_value() == "xoxb-1"
    assert settings.slack.api_url == "http://127.0.0.1:9/api/"
    assert settings.openai.base_url == "http://127.0.0.1:8081/v1"
    assert settings.candor.default_model == "gemma3-270m"
    assert settings.qdrant.url == "http://qdrant:6333"
    assert settings.database_url == "sqlite+aiosqlite:////srv/candor/candor.db"


def test_dotenv_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = tmp_path / ".env"
    env.write_text("CANDOR_DEFAULT_MODEL=from-file\nOPENAI_TIMEOUT_SECONDS=7\n")
    monkeypatch.setenv("CANDOR_DEFAULT_MODEL", "from-env")
    settings = load_settings(env)
    assert settings.candor.default_model == "from-env"
    assert settings.openai.timeout_seconds == 7


def test_missing_secret_is_one_sentence_naming_the_variable() -> None:
    settings = load_settings(None)
    with pytest.raises(ConfigError) as info:
        settings.require("SLACK_BOT_TOKEN")
    assert str(info.value) == (
        "SLACK_BOT_TOKEN is not set: add it to your environment or to .env (see .env.example)."
    )


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_TIMEOUT_SECONDS", "soon")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert str(info.value).startswith("OPENAI_TIMEOUT_SECONDS has an invalid value")


def test_secrets_do_not_leak_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    settings = load_settings(None)
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in str(settings.model_dump())


def test_unreadable_env_lines_are_listed_once_and_dotenv_stays_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / ".env"
    env.write_text('CANDOR_DEFAULT_MODEL=m1\nnot a setting\nOPENAI_API_KEY="sk-open\nX=1\n')
    caplog.set_level("WARNING")
    settings = load_settings(env)
    assert settings.candor.default_model == "m1"
    assert [(p.line, p.name) for p in settings.env_file_problems] == [
        (2, None),
        (3, "OPENAI_API_KEY"),
    ]
    assert "quote is never closed" in str(settings.env_file_problems[1])
    assert not [r for r in caplog.records if r.name.startswith("dotenv")]
    with pytest.raises(ConfigError) as info:
        settings.require("OPENAI_API_KEY")
    assert f"line 3 of {env} sets it" in str(info.value)
    assert "sk-open" not in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CANDOR_DEFAULT_TEMPERATURE", "2.5"),
        ("CANDOR_MAX_ANSWER_TOKENS", "-3"),
        ("CANDOR_BUDGET_TIMEZONE", "Mars/Base"),
        ("CANDOR_BUDGET_WARN_AT_FRACTION", "1.5"),
        ("CANDOR_CONTEXT_WINDOWS", "[1, 2]"),
        ("DATABASE_URL", "oracle://scott@db/orcl"),
    ],
)
def test_out_of_range_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert str(info.value).startswith(f"{variable} has an invalid value: it must be ")
