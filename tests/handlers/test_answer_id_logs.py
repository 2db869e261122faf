"""`CANDOR_LOG_FORMAT=json`: the log lines of an answer carry its answer id (the row's id),
set when the answer is stored, beside the event, channel and user ids."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot.db.models import AnswerRow
from bot.deps import Deps
from bot.observability.logs import JsonFormatter, Redactor, secrets_of
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention
from tests.handlers.conftest import Candor


@pytest.fixture
def json_lines(deps: Deps) -> Iterator[list[dict[str, str]]]:
    """Every INFO+ log line as `CANDOR_LOG_FORMAT=json` writes it (formatted when emitted,
    in the context of the task that logged it, as the real handler does)."""
    formatter = JsonFormatter(Redactor(secrets_of(deps.settings)))
    lines: list[dict[str, str]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(formatter.format(record)))

    handler = Capture(level=logging.INFO)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lines
    root.removeHandler(handler)
    root.setLevel(level)


async def test_the_json_log_lines_after_an_answer_is_stored_carry_its_answer_id(
    candor: Candor,
    deps: Deps,
    fake_llm: FakeOpenAIServer,
    json_lines: list[dict[str, str]],
) -> None:
    # An unsure answer is flagged, so the review step logs after the answer is stored.
    fake_llm.enqueue("Deploy with make.", logprob=-2.0)

    await candor.send.event(app_mention("<@UBOT> how do we deploy?", channel="C1"))
    await candor.idle()

    async with deps.db.sessions() as session:
        answer = (await session.execute(select(AnswerRow))).scalar_one()
    carried = [line for line in json_lines if line.get("answer_id") == str(answer.id)]
    assert carried, f"no log line carries answer id {answer.id}: {json_lines}"
    assert all((line["channel"], line["user"]) == ("C1", answer.user_id) for line in carried)
    assert all("Deploy with make" not in json.dumps(line) for line in json_lines)
