"""The conversation manager against the fake LLM server and a real database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.conversation import Attachment, HistoryMessage
from bot.db import repo
from bot.db.models import AnswerRow, ConversationTurnRow
from bot.deps import Deps
from bot.errors import ChannelDisabled
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import make_turn

turn = make_turn


async def set_channel(deps: Deps, channel: str = "C1", **values: object) -> None:
    async with deps.db.sessions.begin() as session:
        row = await repo.get_or_create_channel_row(
            session, workspace_id="T1", channel_id=channel, now=deps.clock.now()
        )
        for key, value in values.items():
            setattr(row, key, value)


async def test_channel_system_message_temperature_and_model_reach_the_llm(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_channel(
        deps,
        system_message="You are the #eng helper for {user} in {channel} on {date}.",
        temperature=1.25,
        model="gpt-4o",
    )
    fake_llm.enqueue("Ship it with `make deploy`.")

    answer = await deps.manager.reply(turn())

    body = fake_llm.last
    assert body["model"] == "gpt-4o"
    assert body["temperature"] == 1.25
    assert body["messages"][0] == {
        "role": "system",
        "content": "You are the #eng helper for ada in #eng on 2026-11-26.",
    }
    assert body["messages"][-1] == {"role": "user", "content": "How do I deploy?"}
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert answer.text == "Ship it with `make deploy`."
    assert answer.model == "gpt-4o"
    assert answer.usage.estimated is False
    assert answer.usage.completion_tokens > 0


async def test_other_channels_keep_the_workspace_default(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_channel(deps, channel="C1", temperature=1.9)
    async with deps.db.sessions.begin() as session:
        default = await repo.get_default_row(session)
        default.system_message = "Workspace default prompt."
        default.temperature = 0.1

    await deps.manager.reply(turn(channel_id="C2"))

    assert fake_llm.last["temperature"] == 0.1
    assert fake_llm.last["messages"][0]["content"] == "Workspace default prompt."
    assert fake_llm.last["model"] == "gpt-4o-mini"


async def test_reasoning_model_gets_no_temperature(
    deps: Deps, fake_llm: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    await set_channel(deps, model="o3-mini", temperature=0.7)
    caplog.set_level("INFO")

    await deps.manager.reply(turn())

    assert "temperature" not in fake_llm.last
    assert fake_llm.last["max_completion_tokens"] == 1024
    assert "reasoning model" in caplog.text


async def test_thread_history_is_sent_and_both_turns_are_stored(
    deps: Deps, fake_llm: FakeOpenAIServer, db: object
) -> None:
    fake_llm.enqueue("First answer.")
    fake_llm.enqueue("Second answer.")
    await deps.manager.reply(turn("First question?", event_id="Ev1"))
    await deps.manager.reply(turn("Second question?", event_id="Ev2"))

    assert [m["content"] for m in fake_llm.last["messages"][1:]] == [
        "First question?",
        "First answer.",
        "Second question?",
    ]
    async with deps.db.sessions() as session:
        rows = (await session.execute(select(ConversationTurnRow))).scalars().all()
        answers = (await session.execute(select(AnswerRow))).scalars().all()
    assert [(r.role, r.text) for r in rows] == [
        ("user", "First question?"),
        ("assistant", "First answer."),
        ("user", "Second question?"),
        ("assistant", "Second answer."),
    ]
    assert [a.event_id for a in answers] == ["Ev1", "Ev2"]


async def test_long_thread_is_trimmed_to_the_window_keeping_the_newest_turns(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    # A model with a 1,000-token window and 200 tokens reserved for the answer.
    deps.settings.candor.context_windows["tiny-model"] = 1000
    await set_channel(deps, model="tiny-model", max_answer_tokens=200)
    async with deps.db.sessions.begin() as session:
        for i in range(60):
            await repo.add_turn(
                session,
                workspace_id="T1",
                channel_id="C1",
                thread_key=turn().thread_key,
                role="user" if i % 2 == 0 else "assistant",
                text=f"message number {i} " + "lorem ipsum dolor sit amet " * 5,
                token_count=0,
                now=deps.clock.now(),
            )

    answer = await deps.manager.reply(turn("And now?"))

    sent = fake_llm.last["messages"]
    history = sent[1:-1]
    assert 0 < len(history) < 60
    assert history[-1]["content"].startswith("message number 59 ")
    numbers = [int(m["content"].split()[2]) for m in history]
    assert numbers == list(range(60 - len(history), 60))  # a contiguous newest suffix
    assert sent[-1]["content"] == "And now?"
    prompt_tokens = deps.tokens.count_messages(sent, "tiny-model")
    assert prompt_tokens + 200 <= 1000
    assert answer.history_turns_dropped == 60 - len(history)
    assert fake_llm.last["max_tokens"] == 200


async def test_history_fallback_is_used_when_the_database_has_none(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    fallback = (
        HistoryMessage("user", "Earlier question"),
        HistoryMessage("assistant", "Earlier reply"),
    )
    await deps.manager.reply(turn("Follow-up", history_fallback=fallback))
    assert [m["content"] for m in fake_llm.last["messages"][1:]] == [
        "Earlier question",
        "Earlier reply",
        "Follow-up",
    ]


async def test_streaming_without_server_usage_counts_tokens_and_marks_estimated(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("Counted locally, not by the server.", usage=False)
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    answer = await deps.manager.reply(turn(), on_delta)

    assert "".join(deltas) == "Counted locally, not by the server."
    assert len(deltas) > 1
    assert answer.usage.estimated is True
    assert answer.usage.completion_tokens == deps.tokens.count(answer.text, "gpt-4o-mini")
    assert answer.usage.prompt_tokens > 0


async def test_disabled_channel_refuses_without_calling_the_llm(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_channel(deps, enabled=False)
    with pytest.raises(ChannelDisabled) as info:
        await deps.manager.reply(turn())
    assert "turned off" in info.value.user_message
    assert fake_llm.requests == []


async def test_images_go_to_vision_models_and_text_only_models_say_so(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    image = Attachment(name="chart.png", mimetype="image/png", data=b"\x89PNG fake")
    await set_channel(deps, model="gpt-4o")
    await deps.manager.reply(turn("What does this chart show?", attachments=(image,)))
    content = fake_llm.last["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What does this chart show?"}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")

    await set_channel(deps, model="gpt-3.5-turbo")
    answer = await deps.manager.reply(
        turn("What does this chart show?", attachments=(image,), thread_ts="2")
    )
    assert fake_llm.last["messages"][-1]["content"] == "What does this chart show?"
    assert any("could not look at the image" in n for n in answer.notices)


async def test_failures_never_log_or_show_secrets(
    deps: Deps, fake_llm: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    fake_llm.enqueue_error(401, message="Incorrect API key provided: sk-test-secret-value", times=3)
    with pytest.raises(Exception) as info:
        await deps.manager.reply(turn())
    shown = getattr(info.value, "user_message", "")
    assert (
        shown
        == "Candor could not sign in to the language model; an admin needs to check OPENAI_API_KEY."
    )
    assert "sk-test-secret-value" not in caplog.text
    assert "sk-test-secret-value" not in shown


async def test_database_failure_before_the_llm_is_one_sentence_and_no_llm_call(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    from sqlalchemy import text

    from bot.errors import StorageUnavailable

    async with deps.db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE budget_usage RENAME TO budget_usage_off"))
    try:
        with pytest.raises(StorageUnavailable) as info:
            await deps.manager.reply(turn())
    finally:
        async with deps.db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE budget_usage_off RENAME TO budget_usage"))
    assert info.value.user_message == (
        "Candor cannot reach its database right now; please try again in a minute."
    )
    assert fake_llm.requests == []
