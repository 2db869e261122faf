"""Socket Mode: the same handlers behind Slack's WebSocket, against the fake endpoint."""

from __future__ import annotations

from handlers.app import SlackRuntime
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention, event_callback
from tests.fakes.slack_server import FakeSlackServer


async def test_socket_mode_event_is_acked_and_answered(
    socket_runtime: SlackRuntime, slack: FakeSlackServer, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("Over the socket.")
    mention = app_mention("<@UBOT> are you there?")

    envelope = await slack.send_socket_envelope("events_api", event_callback(mention))
    ack = await slack.wait_for_ack(envelope)
    await socket_runtime.surface.idle()

    assert ack["envelope_id"] == envelope
    [answer] = slack.messages("C1")
    assert answer.text == "Over the socket."
    assert answer.thread_ts == mention["ts"]
    opened = slack.calls_to("apps.connections.open")[0]
    assert opened.headers["Authorization"] == "Bearer xapp-test-token"
