"""The user's language: `{locale}` / `{language}` and the answer-language instruction.

Asserted on the system message the fake LLM received: through the conversation manager,
and through Slack (signed events, `users.info` with the user's locale).
"""

from __future__ import annotations

import pytest

from bot import language
from bot.db import repo
from bot.deps import Deps
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention
from tests.helpers import make_turn
from tests.redaction.conftest import Live


def system_message(fake_llm: FakeOpenAIServer) -> str:
    first = fake_llm.last["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


async def set_system(deps: Deps, text: str) -> None:
    async with deps.db.sessions.begin() as session:
        row = await repo.get_or_create_channel_row(
            session, workspace_id="T1", channel_id="C1", now=deps.clock.now()
        )
        row.system_message = text


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("How do I deploy the billing service?", "en"),
        ("Comment est-ce que je déploie le service de facturation ?", "fr"),
        ("Wie kann ich den Dienst für die Abrechnung deployen?", "de"),
        ("¿Cómo despliego el servicio de facturación?", "es"),
        ("Come posso fare il deploy del servizio?", "it"),
        ("Como faço o deploy do serviço de cobrança?", "pt"),
        ("Hoe kan ik de dienst voor facturatie deployen?", "nl"),
        ("ok", None),
        ("PROJ-42", None),
    ],
)
def test_the_stopword_detector(text: str, code: str | None) -> None:
    assert language.detect(text) == code


async def test_a_question_in_french_gets_a_french_instruction(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await deps.manager.reply(make_turn("Comment est-ce que je déploie le service ?"))

    system = system_message(fake_llm)
    assert system.endswith(
        "\n\nRéponds en français. Answer in French, the language of the user's message."
    )


async def test_an_english_question_from_a_german_locale_is_answered_in_english(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await deps.manager.reply(make_turn("How do I deploy the service?", locale="de-DE"))

    system = system_message(fake_llm)
    assert "Deutsch" not in system and "German" not in system
    assert system == system_message_for_english(deps)


def system_message_for_english(deps: Deps) -> str:
    """The default system message as rendered, with no language instruction added."""
    from bot import channels

    return channels.render_system_message(
        deps.settings.candor.default_system_message,
        **channels.template_values(
            now=deps.clock.now(), channel="#eng", user="ada", workspace="T1", model="gpt-4o-mini"
        ),
        **language.template_values("de-DE"),
    )


async def test_a_short_question_falls_back_to_the_locale(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await deps.manager.reply(make_turn("PROJ-42?", locale="de-DE"))

    assert system_message(fake_llm).endswith(
        "\n\nAntworte auf Deutsch. Answer in German, the user's language, unless their "
        "message is written in another language; then answer in that one."
    )


async def test_locale_and_language_fill_the_template_and_replace_the_instruction(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_system(deps, "Help {user}. Their locale is {locale}; answer in {language}.")

    await deps.manager.reply(make_turn("Comment est-ce que je déploie ?", locale="fr-FR"))

    assert system_message(fake_llm) == "Help ada. Their locale is fr-FR; answer in French."


async def test_a_system_message_naming_a_language_wins(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_system(deps, "Always answer in English, whatever the user writes.")

    await deps.manager.reply(make_turn("Comment est-ce que je déploie le service ?"))

    assert system_message(fake_llm) == "Always answer in English, whatever the user writes."


async def test_a_french_system_message_and_an_english_question_get_an_instruction(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_system(deps, "Tu es l'assistant de l'équipe, tu es précis et bref.")

    await deps.manager.reply(make_turn("How do I deploy the service?"))

    assert system_message(fake_llm).endswith(
        "\n\nAnswer in English, the language of the user's message."
    )


# --- through Slack ----------------------------------------------------------------------


async def test_slack_french_question_from_a_french_user(
    live: Live, fake_llm: FakeOpenAIServer
) -> None:
    live.slack.set_user("U1", locale="fr-FR")

    await live.send.event(app_mention("<@UBOT> comment est-ce que je déploie le service ?"))
    await live.idle()

    assert "Réponds en français." in system_message(fake_llm)
    lookups = live.slack.calls_to("users.info")
    assert lookups and any(str(c.get("include_locale")).lower() in ("1", "true") for c in lookups)


async def test_slack_german_locale_with_an_english_question_is_answered_in_english(
    live: Live, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    live.slack.set_user("U1", locale="de-DE")
    await set_system(deps, "You help {user} (locale {locale}).")

    await live.send.event(app_mention("<@UBOT> how do I deploy the service?"))
    await live.idle()

    assert system_message(fake_llm) == "You help u1 (locale de-DE)."
