"""Mentions, DMs and threads through the real Bolt HTTP path, asserting what users see."""

from __future__ import annotations

import json
import time

from sqlalchemy import text

from bot.db import repo
from bot.deps import Deps
from bot.llm import LLMRateLimited
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import (
    app_mention,
    event_callback,
    message,
    new_ts,
    sign,
    url_verification,
)
from tests.handlers.conftest import Candor

CHAT_METHODS = ("chat.postMessage", "chat.startStream", "chat.update", "chat.postEphemeral")


async def set_channel(deps: Deps, channel: str = "C1", **values: object) -> None:
    async with deps.db.sessions.begin() as session:
        row = await repo.get_or_create_channel_row(
            session, workspace_id="T1", channel_id=channel, now=deps.clock.now()
        )
        for key, value in values.items():
            setattr(row, key, value)


def posted(candor: Candor) -> list[str]:
    return [c.method for c in candor.slack.calls if c.method in CHAT_METHODS]


async def test_app_mention_gets_a_streamed_answer_in_its_thread(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("**Deploys** run with `make deploy`.", prompt_tokens=40, completion_tokens=9)
    mention = app_mention("<@UBOT> how do we deploy?")

    status, _ = await candor.send.event(mention)
    await candor.idle()

    assert status == 200
    [answer] = candor.slack.messages("C1")
    assert answer.thread_ts == mention["ts"]
    assert answer.text == "**Deploys** run with `make deploy`."  # streamed as markdown
    assert "gpt-4o-mini · 49 tokens (40 in, 9 out)" in answer.visible_text
    start = candor.slack.calls_to("chat.startStream")[0]
    assert start.get("recipient_user_id") == "U1"
    assert start.get("recipient_team_id") == "T1"
    assert fake_llm.last["messages"][-1] == {"role": "user", "content": "how do we deploy?"}
    reactions = [
        (c.method, c.get("name")) for c in candor.slack.calls if c.method.startswith("reactions.")
    ]
    assert reactions == [("reactions.add", "eyes"), ("reactions.remove", "eyes")]


async def test_retried_delivery_and_duplicate_event_types_answer_once(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    mention = app_mention("<@UBOT> once please")
    body = event_callback(mention)
    # The same message also arrives as `message.channels` with another event id.
    as_message = message(mention["text"], channel="C1", channel_type="channel", ts=mention["ts"])

    await candor.send.event(body)
    await candor.send.event(body, retry_num=1)
    await candor.send.event(event_callback(as_message))
    await candor.idle()

    assert len(fake_llm.requests) == 1
    assert len(candor.slack.messages("C1")) == 1


async def test_mention_and_message_copy_share_one_claim_even_if_both_run(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    # A thread follow-up that mentions Candor: even if the message copy were not
    # filtered, the claim is keyed on channel + ts, so only one answer is written.
    first = app_mention("<@UBOT> start")
    await candor.send.event(first)
    await candor.idle()
    follow = app_mention("<@UBOT> more", thread_ts=first["ts"])
    copy = message(
        "more", channel="C1", channel_type="channel", ts=follow["ts"], thread_ts=first["ts"]
    )
    await candor.send.event(event_callback(follow))
    await candor.send.event(event_callback(copy))
    await candor.idle()

    assert len(fake_llm.requests) == 2


async def test_dm_is_answered_in_thread_with_assistant_status(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("Hi there!")
    dm = message("hello candor", channel="D1", channel_type="im")

    await candor.send.event(dm)
    await candor.idle()

    [answer] = candor.slack.messages("D1")
    assert answer.text == "Hi there!"
    assert answer.thread_ts == dm["ts"]
    statuses = [c.get("status") for c in candor.slack.calls_to("assistant.threads.setStatus")]
    assert statuses == ["is thinking…", ""]
    assert not candor.slack.calls_to("reactions.add")


async def test_thread_follow_up_without_mention_is_answered(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("First answer.")
    fake_llm.enqueue("Second answer.")
    first = app_mention("<@UBOT> what is X?")
    await candor.send.event(first)
    await candor.idle()

    follow = message("and Y?", channel="C1", channel_type="channel", thread_ts=first["ts"])
    await candor.send.event(follow)
    await candor.idle()

    texts = [m.text for m in candor.slack.messages("C1", thread_ts=first["ts"])]
    assert texts == ["First answer.", "Second answer."]
    roles = [m["role"] for m in fake_llm.last["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


async def test_messages_candor_must_ignore_produce_nothing(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    ignored = [
        message("from a bot", channel="D1", bot_id="B999", user="U9"),
        message("from me", channel="D1", user="UBOT"),
        message("edited", channel="D1", subtype="message_changed"),
        message("deleted", channel="D1", subtype="message_deleted"),
        message("channel chatter", channel="C1", channel_type="channel"),
        message(
            "thread nobody asked Candor in",
            channel="C1",
            channel_type="channel",
            thread_ts=new_ts(),
        ),
    ]
    for event in ignored:
        status, _ = await candor.send.event(event)
        assert status == 200
    await candor.idle()

    assert fake_llm.requests == []
    assert posted(candor) == []


async def test_bad_signature_and_stale_timestamp_are_rejected(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    event = app_mention("<@UBOT> hi")

    bad, _ = await candor.send.event(event, secret="wrong-secret")
    stale, _ = await candor.send.event(event, timestamp=int(time.time()) - 60 * 10)
    await candor.idle()

    assert (bad, stale) == (401, 401)
    assert fake_llm.requests == []
    assert posted(candor) == []


async def test_url_verification_and_health(candor: Candor) -> None:
    import aiohttp

    status, body = await candor.send.event(url_verification("abc123"))
    assert status == 200
    assert "abc123" in body
    async with aiohttp.ClientSession() as session, session.get(candor.base_url + "/healthz") as r:
        assert r.status == 200
        assert (await r.json())["ok"] is True


async def test_streaming_refused_falls_back_to_post_and_update(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    candor.slack.refuse_streaming("feature_not_enabled")
    fake_llm.enqueue("## Steps\n**Run** [the script](https://x.test/run).", chunk_size=4)
    mention = app_mention("<@UBOT> steps?")

    await candor.send.event(mention)
    await candor.idle()

    [answer] = candor.slack.messages("C1")
    assert answer.thread_ts == mention["ts"]
    assert answer.text.startswith("*Steps*\n*Run* <https://x.test/run|the script>.")
    assert "_gpt-4o-mini · " in answer.text
    assert candor.slack.calls_to("chat.postMessage")
    assert candor.slack.calls_to("chat.update")


async def test_rate_limited_slack_call_is_retried(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    candor.slack.refuse_streaming()
    candor.slack.rate_limit_next("chat.postMessage", retry_after=0)
    fake_llm.enqueue("Still here.")

    await candor.send.event(app_mention("<@UBOT> hi"))
    await candor.idle()

    assert candor.slack.messages("C1")[0].text.startswith("Still here.")
    assert len(candor.slack.calls_to("chat.postMessage")) == 2


def _long_answer() -> str:
    prose = "\n\n".join(f"Paragraph {i}: " + "words " * 60 for i in range(20))
    code = "```python\n" + "\n".join(f"print({i})  # line" for i in range(300)) + "\n```\n"
    return prose + "\n\n" + code + "\nThe end."


async def test_long_answer_is_split_without_msg_too_long(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_channel(deps, max_answer_tokens=8_000)  # the fake sends it all, whatever the limit
    candor.slack.max_text_chars = 4_000
    text = _long_answer()
    fake_llm.enqueue(text, chunk_size=200)

    await candor.send.event(app_mention("<@UBOT> essay please"))
    await candor.idle()

    parts = candor.slack.messages("C1")
    assert len(parts) >= 3
    assert all(len(p.text) <= 4_000 for p in parts)
    assert all(p.text.count("```") % 2 == 0 for p in parts)
    assert "The end." in parts[-1].text
    assert "gpt-4o-mini" in parts[-1].visible_text
    assert candor.slack.errors() == []


async def test_long_answer_split_also_when_streaming_is_refused(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_channel(deps, max_answer_tokens=8_000)
    candor.slack.max_text_chars = 4_000
    candor.slack.refuse_streaming()
    fake_llm.enqueue(_long_answer(), chunk_size=500)

    await candor.send.event(app_mention("<@UBOT> essay please"))
    await candor.idle()

    parts = candor.slack.messages("C1")
    assert len(parts) >= 3
    assert all(p.text.count("```") % 2 == 0 for p in parts)
    assert "The end." in parts[-1].text
    assert [e for e in candor.slack.errors() if e[1] != "feature_not_enabled"] == []


async def test_llm_rate_limit_is_one_clear_sentence_in_the_thread(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue_error(429, times=3)
    mention = app_mention("<@UBOT> hi")

    await candor.send.event(mention)
    await candor.idle()

    [reply] = candor.slack.messages("C1")
    assert reply.text == LLMRateLimited.user_message
    assert reply.thread_ts == mention["ts"]
    assert candor.slack.calls_to("reactions.remove")


async def test_unexpected_error_is_a_generic_sentence_never_the_exception(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    class Exploding:
        async def retrieve(self, query: object) -> list[object]:
            raise RuntimeError("secret internal detail")

    deps.manager.knowledge = Exploding()  # type: ignore[assignment]
    await candor.send.event(app_mention("<@UBOT> hi"))
    await candor.idle()

    [reply] = candor.slack.messages("C1")
    assert reply.text == "Sorry, something went wrong on Candor's side; the team has been told."
    assert candor.slack.calls_to("reactions.remove")


async def test_over_budget_is_told_ephemerally_without_calling_the_llm(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    from datetime import UTC, datetime

    from bot.ports import OverBudget

    class Broke:
        async def reserve(self, **_: object) -> object:
            raise OverBudget(spent_usd=5, limit_usd=5, resets_at=datetime(2026, 12, 1, tzinfo=UTC))

    deps.manager.spend = Broke()  # type: ignore[assignment]
    await candor.send.event(app_mention("<@UBOT> hi"))
    await candor.idle()

    assert fake_llm.requests == []
    [note] = candor.slack.messages("C1")
    assert note.ephemeral_to == "U1"
    assert note.text.startswith("You have used $5.00 of your $5.00 budget")
    assert candor.slack.calls_to("reactions.remove")


async def test_image_to_text_only_model_gets_a_notice(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_channel(deps, model="gpt-3.5-turbo")
    image = candor.slack.add_file("chart.png", b"\x89PNG fake", "image/png")
    big = candor.slack.add_file("big.png", b"x" * (6 * 1024 * 1024), "image/png")

    await candor.send.event(app_mention("<@UBOT> what is this?", files=[image, big]))
    await candor.idle()

    [answer] = candor.slack.messages("C1")
    assert "does not accept images" in answer.visible_text
    assert "I skipped big.png: it is 6 MB and the limit is 5 MB." in answer.visible_text
    downloads = candor.slack.calls_to("file.download")
    assert [d.headers["Authorization"] for d in downloads] == ["Bearer xoxb-test-token"]
    assert fake_llm.last["messages"][-1]["content"] == "what is this?"


async def test_image_reaches_a_vision_model(candor: Candor, fake_llm: FakeOpenAIServer) -> None:
    image = candor.slack.add_file("chart.png", b"\x89PNG fake", "image/png")

    await candor.send.event(message("look", channel="D1", files=[image], subtype="file_share"))
    await candor.idle()

    content = fake_llm.last["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "look"}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


async def test_thread_unknown_to_the_database_is_rebuilt_from_slack(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    root = new_ts()
    mention = app_mention("<@UBOT> so which one?", thread_ts=root)
    candor.slack.set_replies(
        "C1",
        root,
        [
            {"ts": root, "user": "U2", "text": "Should we use Postgres or MySQL?"},
            {"ts": new_ts(), "user": "UBOT", "bot_id": "BBOT", "text": "Postgres, usually."},
            {"ts": new_ts(), "user": "U3", "bot_id": "BOTHER", "text": "another bot"},
            {"ts": mention["ts"], "user": "U1", "text": mention["text"]},
        ],
    )

    await candor.send.event(mention)
    await candor.idle()

    sent = fake_llm.last["messages"]
    assert sent[1:] == [
        {"role": "user", "content": "Should we use Postgres or MySQL?"},
        {"role": "assistant", "content": "Postgres, usually."},
        {"role": "user", "content": "so which one?"},
    ]


async def test_disabled_channel_gets_no_answer_and_no_message(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    await set_channel(deps, enabled=False)

    await candor.send.event(app_mention("<@UBOT> hello?"))
    await candor.idle()

    assert fake_llm.requests == []
    assert posted(candor) == []
    assert not candor.slack.calls_to("reactions.add")


async def test_shutdown_cuts_off_an_answer_that_outlives_the_grace_period(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("too slow", delay=5)
    mention = app_mention("<@UBOT> slow question")
    await candor.send.event(mention)
    await candor.slack.wait_for("reactions.add")

    await candor.runtime.shutdown(grace_seconds=0.1)

    [note] = candor.slack.messages("C1")
    assert note.text == "…(answer cut off: Candor was restarting)"
    assert note.thread_ts == mention["ts"]
    assert candor.slack.calls_to("reactions.remove")


async def test_assistant_thread_started_offers_suggested_prompts(candor: Candor) -> None:
    event = {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": "U1",
            "context": {"channel_id": "C1", "team_id": "T1", "enterprise_id": None},
            "channel_id": "D1",
            "thread_ts": "1729999327.187299",
        },
        "event_ts": "1729999327.187299",
    }
    await candor.send.event(event)
    [call] = await candor.slack.wait_for("assistant.threads.setSuggestedPrompts")

    prompts = call.get("prompts")
    prompts = json.loads(prompts) if isinstance(prompts, str) else prompts
    assert call.get("channel_id") == "D1"
    assert len(prompts) == 3


async def test_feedback_button_thanks_the_user(candor: Candor) -> None:
    from tests.fakes.slack_events import block_actions

    url = candor.slack.response_url()
    status, _ = await candor.send.action(
        block_actions("candor_feedback_up", "up:7", response_url=url)
    )
    [call] = await candor.slack.wait_for("response_url")

    assert status == 200
    assert call.get("text").startswith("Thanks for the feedback")


def test_sign_matches_slacks_documented_example() -> None:
    # From Slack's "Verifying requests" guide.
    body = (
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    headers = sign(body, "8f742231b10e8888abcd99yyyzzz85a5", 1531420618)
    assert headers["X-Slack-Signature"] == (
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    )


async def test_database_down_is_one_sentence_not_silence(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    # A real database failure: the table the claim writes to is gone for a moment.
    async with deps.db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE processed_events RENAME TO processed_events_off"))
    try:
        await candor.send.event(app_mention("<@UBOT> are you there?"))
        await candor.idle()
    finally:
        async with deps.db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE processed_events_off RENAME TO processed_events"))
    [reply] = candor.slack.messages("C1")
    assert reply.text == "Candor cannot reach its database right now; please try again in a minute."
    assert fake_llm.requests == []


async def test_feedback_votes_are_stored_one_per_user(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    from sqlalchemy import select

    from bot.db.models import AnswerFeedbackRow, AnswerRow
    from tests.fakes.slack_events import block_actions

    await candor.send.event(app_mention("<@UBOT> rate me"))
    await candor.idle()
    async with deps.db.sessions() as session:
        answer_id = (await session.execute(select(AnswerRow.id))).scalar_one()
    for vote in ("up", "down"):
        await candor.send.action(
            block_actions(
                f"candor_feedback_{vote}",
                f"{vote}:{answer_id}",
                response_url=candor.slack.response_url(),
            )
        )
    await candor.slack.wait_for("response_url", 2)
    async with deps.db.sessions() as session:
        votes = (await session.execute(select(AnswerFeedbackRow))).scalars().all()
    assert [(v.answer_id, v.vote) for v in votes] == [(answer_id, "down")]
