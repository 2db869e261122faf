"""What an operator sees: /metrics after an answer, /readyz on an unmigrated database,
JSON log lines with ids and no secrets, the Socket Mode health port."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from bot.db.engine import open_database
from bot.deps import Deps
from bot.observability.logs import JsonFormatter, Redactor, log_context, secrets_of
from handlers.app import SlackRuntime
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention
from tests.fakes.slack_server import FakeSlackServer
from tests.handlers.conftest import Candor, configure


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


async def test_metrics_expose_the_counters_after_one_answer(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("Deploy with make.", prompt_tokens=40, completion_tokens=9)

    await candor.send.event(app_mention("<@UBOT> how do we deploy?"))
    await candor.idle()
    status, text = await get(candor.base_url + "/metrics")

    assert status == 200
    assert 'candor_events_received_total{type="app_mention"} 1.0' in text
    # Flagged or not is the confidence core's call; either way it is one answer.
    assert re.search(
        r'candor_answers_total\{flagged="(true|false)",model="gpt-4o-mini"\} 1.0', text
    )
    assert 'candor_llm_tokens_total{kind="prompt",model="gpt-4o-mini"} 40.0' in text
    assert 'candor_llm_tokens_total{kind="completion",model="gpt-4o-mini"} 9.0' in text
    assert "candor_answer_seconds_count 1.0" in text
    assert "candor_ack_seconds_count 1.0" in text
    assert "candor_answers_in_flight 0.0" in text
    # 40 * $0.15 + 9 * $0.60 per 1M tokens, rounded up to a whole micro-USD.
    assert 'candor_llm_cost_usd_total{model="gpt-4o-mini"} 1.2e-05' in text


async def test_readyz_is_ready_on_a_migrated_database_and_healthz_is_liveness(
    candor: Candor,
) -> None:
    status, body = await get(candor.base_url + "/readyz")
    assert (status, json.loads(body)["checks"]["database"]) == (200, "ok")
    assert (await get(candor.base_url + "/healthz"))[0] == 200


async def test_readyz_fails_on_an_unmigrated_database(
    deps: Deps, slack: FakeSlackServer, tmp_path: Path
) -> None:
    empty = open_database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    unmigrated = dataclasses.replace(deps, db=empty, extras={})
    configure(unmigrated, slack)
    runtime = SlackRuntime.build(unmigrated)
    port = await runtime.start_http(0, host="127.0.0.1")
    try:
        status, body = await get(f"http://127.0.0.1:{port}/readyz")
        live, _ = await get(f"http://127.0.0.1:{port}/healthz")
    finally:
        await runtime.shutdown(grace_seconds=1)
        await empty.dispose()

    assert status == 503
    assert json.loads(body)["checks"]["database"].startswith("not migrated to ")
    assert live == 200  # alive, just not ready


async def test_socket_mode_serves_health_and_metrics_on_its_own_port(
    deps: Deps, slack: FakeSlackServer
) -> None:
    configure(deps, slack)
    runtime = SlackRuntime.build(deps)
    port = await runtime.start_health(0, host="127.0.0.1")
    try:
        assert (await get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
        assert (await get(f"http://127.0.0.1:{port}/readyz"))[0] == 200
        status, text = await get(f"http://127.0.0.1:{port}/metrics")
    finally:
        await runtime.shutdown(grace_seconds=1)
    assert status == 200 and "candor_answers_in_flight" in text


def test_json_log_lines_parse_carry_ids_and_hold_no_secret(deps: Deps) -> None:
    settings = deps.settings
    settings.slack.bot_token = SecretStr("xoxb-1111-2222-abcdefSECRET")
    settings.slack.signing_secret = SecretStr("signing-secret-0123456789")
    formatter = JsonFormatter(Redactor(secrets_of(settings)), content=False)
    logger = logging.getLogger("candor.test.json")
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    handler = Capture()
    logger.addHandler(handler)
    try:
        with log_context(event_id="Ev1", channel="C1", user="U1"):
            logger.warning(
                "Slack refused token %s (secret %s, key %s)",
                "xoxb-1111-2222-abcdefSECRET",
                "signing-secret-0123456789",
                "sk-test-secret-value",
                extra={"answer_id": 7, "content": "what is our payroll password?"},
            )
            try:
                raise RuntimeError("auth failed for xoxb-1111-2222-abcdefSECRET")
            except RuntimeError:
                logger.exception("call failed")
    finally:
        logger.removeHandler(handler)

    objects = [json.loads(line) for line in lines]
    assert [(o["event_id"], o["channel"], o["user"]) for o in objects] == [("Ev1", "C1", "U1")] * 2
    assert objects[0]["answer_id"] == "7"
    assert "content" not in objects[0]
    assert "RuntimeError" in objects[1]["exc"]
    for secret in (
        "xoxb-1111-2222-abcdefSECRET",
        "signing-secret-0123456789",
        "sk-test-secret-value",  # the OPENAI_API_KEY the settings fixture configures
        "payroll password",
    ):
        assert all(secret not in line for line in lines), secret


def test_message_text_is_logged_only_with_log_content(deps: Deps) -> None:
    formatter = JsonFormatter(Redactor(secrets_of(deps.settings)), content=True)
    record = logging.LogRecord("candor", logging.INFO, __file__, 1, "asked", (), None)
    record.content = "how do we deploy?"
    assert json.loads(formatter.format(record))["content"] == "how do we deploy?"


@pytest.mark.parametrize("missing", ["DATABASE_URL", "QDRANT_URL"])
def test_several_replicas_on_embedded_stores_refuse_to_start(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    from bot.cli.serve import check_replicas
    from bot.settings import ConfigError, load_settings

    monkeypatch.setenv("CANDOR_REPLICAS", "3")
    monkeypatch.setenv("DATABASE_URL", "postgresql://candor:pw@db:5432/candor")
    monkeypatch.setenv("QDRANT_URL", "http://qdrant:6333")
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigError) as err:
        check_replicas(load_settings(None))
    assert str(err.value).startswith(f"CANDOR_REPLICAS is 3, but {missing}")

    monkeypatch.setenv(missing, "postgresql://x@db/c" if missing == "DATABASE_URL" else "http://q")
    check_replicas(load_settings(None))  # shared stores: fine
