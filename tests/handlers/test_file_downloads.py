"""Files on messages: the bot token reaches only Slack's file origin, and files arrive whole.

In these tests `SLACK_API_URL` is the fake Slack server, so its origin is the allowed
file origin; a second fake server on another port stands in for a foreign host.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator

import pytest

from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import message
from tests.fakes.slack_server import FakeSlackServer
from tests.handlers.conftest import Candor

#: Several hundred KB of bytes that do not compress into one read buffer.
PICTURE = b"\x89PNG\r\n\x1a\n" + os.urandom(700 * 1024)


@pytest.fixture
async def foreign() -> AsyncIterator[FakeSlackServer]:
    async with FakeSlackServer() as server:
        yield server


async def look_at(candor: Candor, *files: dict[str, object]) -> str:
    """Send a DM with `files`; return what the user reads in reply."""
    await candor.send.event(message("look", channel="D1", files=list(files), subtype="file_share"))
    await candor.idle()
    return "\n".join(m.visible_text for m in candor.slack.messages("D1"))


def authorized(server: FakeSlackServer) -> list[str]:
    """The Authorization headers of every file download `server` received."""
    return [
        c.headers["Authorization"]
        for c in server.calls_to("file.download")
        if "Authorization" in c.headers
    ]


async def test_token_is_never_sent_to_a_foreign_file_url(
    candor: Candor, foreign: FakeSlackServer, fake_llm: FakeOpenAIServer
) -> None:
    planted = foreign.add_file("chart.png", PICTURE, "image/png")

    reply = await look_at(candor, planted)

    assert authorized(foreign) == []
    assert "I could not download chart.png from Slack." in reply
    assert isinstance(fake_llm.last["messages"][-1]["content"], str)  # no image went in


async def test_redirect_to_another_origin_is_not_followed_with_the_token(
    candor: Candor, foreign: FakeSlackServer
) -> None:
    elsewhere = foreign.add_file("chart.png", PICTURE, "image/png")["url_private"]
    image = candor.slack.add_file("chart.png", PICTURE, "image/png", redirect_to=elsewhere)

    reply = await look_at(candor, image)

    assert authorized(candor.slack) == ["Bearer xoxb-test-token"]  # Slack's origin: yes
    assert authorized(foreign) == []
    assert foreign.calls_to("file.download") == []  # not followed at all, token or not
    assert "I could not download chart.png from Slack." in reply


async def test_redirect_within_slacks_origin_is_followed(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    target = candor.slack.add_file("chart.png", PICTURE, "image/png")["url_private"]
    image = candor.slack.add_file("chart.png", PICTURE, "image/png", redirect_to=target)

    await look_at(candor, image)

    assert authorized(candor.slack) == ["Bearer xoxb-test-token"] * 2
    url = fake_llm.last["messages"][-1]["content"][1]["image_url"]["url"]
    assert base64.b64decode(url.split(",", 1)[1]) == PICTURE


async def test_external_file_is_skipped_without_a_request(
    candor: Candor, foreign: FakeSlackServer
) -> None:
    linked = foreign.add_file("chart.png", PICTURE, "image/png", is_external=True)
    linked["url_private"] = linked["url_private_download"] = (
        candor.slack.base + "/files/FEXT/chart.png"
    )

    reply = await look_at(candor, linked)

    assert candor.slack.calls_to("file.download") == []
    assert foreign.calls_to("file.download") == []
    assert "I skipped chart.png: it is stored outside Slack." in reply


async def test_image_of_several_hundred_kb_arrives_whole(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    image = candor.slack.add_file("chart.png", PICTURE, "image/png")

    await look_at(candor, image)

    url = fake_llm.last["messages"][-1]["content"][1]["image_url"]["url"]
    assert base64.b64decode(url.split(",", 1)[1]) == PICTURE


async def test_file_bigger_than_slack_said_is_refused_as_over_the_limit(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    big = b"\x89PNG" + b"x" * (6 * 1024 * 1024)
    image = candor.slack.add_file("big.png", big, "image/png", size=1024)

    reply = await look_at(candor, image)

    assert "I skipped big.png: it is 6 MB and the limit is 5 MB." in reply
    assert isinstance(fake_llm.last["messages"][-1]["content"], str)


async def test_file_shorter_than_slack_said_is_not_used(
    candor: Candor, fake_llm: FakeOpenAIServer
) -> None:
    image = candor.slack.add_file("chart.png", PICTURE, "image/png", size=len(PICTURE) + 10)

    reply = await look_at(candor, image)

    assert "I could not download all of chart.png from Slack." in reply
    assert isinstance(fake_llm.last["messages"][-1]["content"], str)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://files.slack.com/files-pri/T1-F1/chart.png", True),
        ("https://FILES.slack.com:443/files-pri/T1-F1/chart.png", True),
        ("http://files.slack.com/files-pri/T1-F1/chart.png", False),
        ("https://files.slack.com.evil.example/chart.png", False),
        ("https://files.slack.com@evil.example/chart.png", False),
        ("https://files.slack.com:8443/chart.png", False),
        ("https://slack.com/files/chart.png", False),
    ],
)
def test_with_slacks_own_api_only_files_slack_com_gets_the_token(url: str, allowed: bool) -> None:
    from handlers.slack_io import _origin, slack_file_origin

    assert (_origin(url) == slack_file_origin("https://slack.com/api/")) is allowed
