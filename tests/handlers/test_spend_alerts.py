"""Budget alerts reach admins in the review channel; the user's heads-up shows in the reply."""

from __future__ import annotations

from pydantic import SecretStr

from bot.deps import Deps
from handlers.app import SlackRuntime
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import SIGNING_SECRET, SlackEventSender, app_mention
from tests.fakes.slack_server import FakeSlackServer


async def test_threshold_alert_goes_to_the_review_channel_and_notice_to_the_user(
    deps: Deps, fake_llm: FakeOpenAIServer
) -> None:
    async with FakeSlackServer() as slack:
        deps.settings.slack.bot_token = SecretStr("xoxb-test-token")
        deps.settings.slack.signing_secret = SecretStr(SIGNING_SECRET)
        deps.settings.slack.api_url = slack.url
        deps.settings.slack.review_channel = "CREVIEW"
        deps.settings.budget.default_usd = 0.01  # $0.01 per month
        runtime = SlackRuntime.build(deps)
        port = await runtime.start_http(0, host="127.0.0.1")
        send = SlackEventSender(f"http://127.0.0.1:{port}/slack/events")
        try:
            # gpt-4o-mini: 40,000 prompt tokens x $0.15/M = $0.006, 60 % of the budget ...
            fake_llm.enqueue("First.", prompt_tokens=40_000, completion_tokens=10)
            await send.event(app_mention("<@UBOT> one", user="U9"))
            await runtime.surface.idle(timeout=10)
            # ... then another $0.003 takes it to 90 %: the next reply carries the heads-up.
            fake_llm.enqueue("Second.", prompt_tokens=20_000, completion_tokens=10)
            await send.event(app_mention("<@UBOT> two", user="U9"))
            await runtime.surface.idle(timeout=10)
            fake_llm.enqueue("Third.", prompt_tokens=10, completion_tokens=1)
            await send.event(app_mention("<@UBOT> three", user="U9"))
            await runtime.surface.idle(timeout=10)
        finally:
            await runtime.shutdown(grace_seconds=5)
        # Answers the confidence core flags go to the review channel too; the alert is one.
        [alert] = [m for m in slack.messages("CREVIEW") if m.text.startswith("Budget alert")]
        assert alert.text.startswith("Budget alert: <@U9> has used")
        shown = " ".join(m.visible_text for m in slack.messages("C1"))
        assert "Heads-up: you have used" in shown
