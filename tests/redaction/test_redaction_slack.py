"""Redaction through Slack: signed events and `/candor redact` commands, real Bolt path.

What a user or admin observes: the request the fake LLM received, the message posted in
the thread (with the "withheld" notice), the rows written, the admin's reply.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.admin.settings import Target
from bot.db import repo
from bot.db.admin_models import AuditRow
from bot.deps import Deps
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention, new_ts
from tests.redaction.conftest import Live
from tests.redaction.helpers import (
    AWS_KEY,
    CARD,
    CARD_DIGITS,
    EMAIL,
    GITHUB_TOKEN,
    NOT_A_CARD,
    OPENAI_KEY,
    SLACK_TOKEN,
    URL_PASSWORD,
    OneChunk,
    assert_none_in,
    every_row,
)


async def test_nothing_withheld_reaches_the_llm_or_the_database_and_the_user_is_told(
    live: Live, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    assert "personal data" in await live.command("redact pii on")
    deps.manager.knowledge = OneChunk(
        f"Deploy with token {GITHUB_TOKEN}; on-call is {EMAIL}.", title="Runbook"
    )
    root = new_ts()
    mention = app_mention(
        f"<@UBOT> my card {CARD} was charged twice, key {OPENAI_KEY}, order {NOT_A_CARD}",
        thread_ts=root,
    )
    live.slack.set_replies(
        "C1",
        root,
        [
            {"ts": root, "user": "U2", "text": f"bot token is {SLACK_TOKEN}, AWS {AWS_KEY}"},
            {"ts": mention["ts"], "user": "U1", "text": mention["text"]},
        ],
    )
    fake_llm.enqueue("I see the double charge on [redacted payment card number].")

    await live.send.event(mention)
    await live.idle()

    sent = json.dumps(fake_llm.requests)
    assert_none_in(sent, (CARD, CARD_DIGITS, EMAIL, SLACK_TOKEN, OPENAI_KEY, AWS_KEY, GITHUB_TOKEN))
    assert "[redacted payment card number]" in sent
    assert "[redacted email address]" in sent  # from the retrieved chunk
    assert "[redacted Slack token]" in sent  # from the thread history
    assert NOT_A_CARD in sent  # 16 digits that fail Luhn are not a card
    [answer] = live.slack.messages("C1")
    assert (
        "I withheld 6 items (3 API keys, a payment card number, a Slack token, "
        "an email address) from the language model." in answer.visible_text
    )
    rows = await every_row(deps.db)
    assert "[redacted payment card number]" in rows  # the stored question is the redacted one
    assert_none_in(rows, (CARD, CARD_DIGITS, EMAIL, SLACK_TOKEN, OPENAI_KEY, AWS_KEY, GITHUB_TOKEN))


async def test_secrets_are_withheld_by_default_and_personal_data_is_not(
    live: Live, fake_llm: FakeOpenAIServer
) -> None:
    await live.send.event(app_mention(f"<@UBOT> is {SLACK_TOKEN} safe to share with {EMAIL}?"))
    await live.idle()

    question = fake_llm.last["messages"][-1]["content"]
    assert question == f"is [redacted Slack token] safe to share with {EMAIL}?"
    [answer] = live.slack.messages("C1")
    assert "I withheld 1 item (a Slack token) from the language model." in answer.visible_text


async def test_url_passwords_are_withheld_but_the_url_is_kept(
    live: Live, fake_llm: FakeOpenAIServer
) -> None:
    await live.send.event(
        app_mention(f"<@UBOT> why does postgres://app:{URL_PASSWORD}@db.internal/main fail?")
    )
    await live.idle()

    question = fake_llm.last["messages"][-1]["content"]
    assert question == "why does postgres://app:[redacted password]@db.internal/main fail?"


async def test_secrets_off_in_a_channel_lets_them_through(
    live: Live, fake_llm: FakeOpenAIServer
) -> None:
    reply = await live.command("redact secrets off")
    assert reply == (
        ":white_check_mark: Redaction of secrets in <#C1> is now off. "
        "It applies from the next message."
    )

    await live.send.event(app_mention(f"<@UBOT> rotate {OPENAI_KEY}"))
    await live.idle()

    assert fake_llm.last["messages"][-1]["content"] == f"rotate {OPENAI_KEY}"
    [answer] = live.slack.messages("C1")
    assert "withheld" not in answer.visible_text


async def test_an_admin_pattern_is_withheld_and_audited(
    live: Live, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    reply = await live.command("redact pattern add TICKET 'PROJ-[0-9]{1,6}'")
    assert reply.startswith(":white_check_mark:")
    listed = await live.command("redact pattern list")
    assert "`TICKET`: `PROJ-[0-9]{1,6}`" in listed

    await live.send.event(app_mention("<@UBOT> what is PROJ-4711 about?"))
    await live.idle()

    assert fake_llm.last["messages"][-1]["content"] == "what is [redacted TICKET] about?"
    [answer] = live.slack.messages("C1")
    assert "I withheld 1 item (a value matching TICKET)" in answer.visible_text
    async with deps.db.sessions() as session:
        audit = list((await session.execute(select(AuditRow))).scalars())
    assert [a.action for a in audit] == ["redact pattern add"]
    assert_none_in(await every_row(deps.db), ("PROJ-4711",))

    removed = await live.command("redact pattern remove TICKET")
    assert removed.startswith(":white_check_mark:")
    assert "patterns: none" in await live.command("redact pattern list")


async def test_an_invalid_admin_regex_is_refused_in_one_sentence_and_changes_nothing(
    live: Live, deps: Deps
) -> None:
    for regex, why in (("(a+)+$", "a repeat inside a repeat"), ("[a-z", "not a valid regular")):
        reply = await live.command(f"redact pattern add BAD '{regex}'")
        assert why in reply
        assert "\n" not in reply and "Traceback" not in reply and "re.error" not in reply

    async with deps.db.sessions() as session:
        row = await repo.get_channel_row(session, workspace_id="T1", channel_id="C1")
        audit = list((await session.execute(select(AuditRow))).scalars())
    assert row is None or row.redact_patterns is None
    assert audit == []


async def test_redact_shows_what_applies_and_where_it_comes_from(live: Live) -> None:
    await live.command("redact pii on --workspace")

    shown = await live.command("redact")

    assert f"*Redaction in {Target('T1', 'C1').label}*" in shown
    assert "secrets (Slack tokens, API keys, private keys, URL passwords): on _(built-in)_" in shown
    assert "personal data" in shown and "on _(workspace default)_" in shown


async def test_a_non_admin_cannot_change_redaction(live: Live, deps: Deps) -> None:
    reply = await live.command("redact secrets off", user="U1")
    assert "only Candor admins" in reply
    async with deps.db.sessions() as session:
        row = await repo.get_channel_row(session, workspace_id="T1", channel_id="C1")
    assert row is None or row.redact_secrets is None
