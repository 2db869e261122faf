"""Jobs that post to Slack, run with the injected clock against the fake Slack server: the
daily usage digest in the admin channel, and budget alerts found after the fact."""

from __future__ import annotations

from bot.clock import FixedClock
from bot.deps import Deps
from bot.jobs.runner import JobRunner
from bot.spend.guard import SpendLedger
from tests.fakes.openai_server import FakeOpenAIServer
from tests.handlers.conftest import Candor
from tests.helpers import make_turn


async def spend(deps: Deps, fake_llm: FakeOpenAIServer, user: str, n: int, tokens: int) -> None:
    for i in range(n):
        fake_llm.enqueue("ok", prompt_tokens=tokens, completion_tokens=0)
        await deps.manager.reply(
            make_turn(user_id=user, thread_ts=f"{user}.{i}", event_id=f"Ev-{user}-{i}")
        )


async def test_the_daily_usage_digest_is_posted_to_the_admin_channel_with_the_chart(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer, clock: FixedClock
) -> None:
    deps.settings.candor.digest_channel = "CADMIN"
    assert isinstance(deps.spend, SpendLedger)
    await deps.spend.set_user_budget("U2", 1.0)
    clock.advance(days=-1)
    # gpt-4o-mini input is $0.15 per 1M tokens.
    await spend(deps, fake_llm, "U2", 1, 10_000_000)
    clock.advance(days=1)
    await spend(deps, fake_llm, "U1", 1, 1_000_000)
    runner = JobRunner(deps, holder="replica-a")
    await runner.tick()  # schedules the digest for 09:00 tomorrow
    clock.advance(days=1)

    outcomes = await runner.tick()

    assert ("usage_digest", True) in [(o.name, o.ok) for o in outcomes]
    [digest] = [m for m in candor.slack.messages("CADMIN") if "usage digest" in m.text]
    assert "*Daily usage digest* for 2026-11-26" in digest.text
    assert "Spent yesterday: $0.15." in digest.text
    assert "1. `U2`: $1.50 / $1.00 (150%), 1 calls :warning:" in digest.text
    assert "2. `U1`: $0.15 / $5.00 (3%), 1 calls" in digest.text
    [upload] = candor.slack.calls_to("files.completeUploadExternal")
    assert upload.get("channel_id") == "CADMIN"
    assert upload.get("initial_comment") == "Daily spend of the top users, last 30 days."


async def test_the_digest_without_a_channel_posts_nothing_and_says_why(
    candor: Candor, deps: Deps
) -> None:
    outcome = await JobRunner(deps, holder="a").run_now("usage_digest")

    assert outcome.ok and outcome.result == "no digest channel set"
    assert candor.slack.calls_to("chat.postMessage") == []


async def test_a_lowered_budget_is_alerted_by_the_job_not_at_request_time(
    candor: Candor, deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    deps.settings.slack.review_channel = "CREVIEW"
    assert isinstance(deps.spend, SpendLedger)
    await spend(deps, fake_llm, "U1", 1, 10_000_000)  # $1.50 of the $5 default: no alert
    await deps.spend.set_user_budget("U1", 1.0, by="UADMIN")
    assert candor.slack.messages("CREVIEW") == []
    runner = JobRunner(deps, holder="a")

    first = await runner.run_now("budget_alerts")
    again = await runner.run_now("budget_alerts")

    assert (first.result, again.result) == ("1 alerts", "0 alerts")
    assert [m.text for m in candor.slack.messages("CREVIEW")] == [
        "Budget alert: <@U1> has used 150% ($1.50) of their $1.00 monthly budget."
    ]
