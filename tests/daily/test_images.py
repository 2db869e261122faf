"""Image generation as a built-in tool: off by default, billed per image, posted in the thread."""

from __future__ import annotations

from bot.deps import Deps
from bot.spend.prices import IMAGE_LIST_USD, MICRO
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention, new_ts, slash_command
from tests.handlers.conftest import Candor
from tests.spend.helpers import ledger_rows

ADMIN = "UADMIN0001"


async def _admin(candor: Candor, text: str) -> str:
    candor.slack.set_user(ADMIN, is_admin=True)
    url = candor.slack.response_url()
    before = len(candor.slack.calls_to("response_url"))
    await candor.send.command(slash_command("/candor", text, user_id=ADMIN, response_url=url))
    calls = await candor.slack.wait_for("response_url", count=before + 1)
    return str(calls[-1].body["text"])


async def _allow_images(candor: Candor, deps: Deps, model: str | None = "gpt-image-1") -> None:
    await deps.manager.tools.set_access(
        workspace_id="T1",
        channel_id="*",
        name="builtin/generate_image",
        allowed=True,
        actor_id=ADMIN,
    )
    if model:
        assert "image-model" in await _admin(candor, f"image-model {model} <#C1|eng>")


async def _draw(candor: Candor, fake_llm: FakeOpenAIServer) -> str:
    fake_llm.enqueue_tool_calls(("generate_image", {"prompt": "a red fox in the snow"}))
    fake_llm.enqueue("Here is a red fox in the snow.")
    root = new_ts()
    await candor.send.event(app_mention("<@UBOT> draw me a red fox", ts=root))
    await candor.idle()
    return root


def _offered(request: dict[str, object]) -> list[str]:
    tools = request.get("tools") or []
    assert isinstance(tools, list)
    return [t["function"]["name"] for t in tools]


async def test_the_image_tool_is_billed_per_image_and_the_image_reaches_the_thread(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    await _allow_images(candor, deps)

    root = await _draw(candor, fake_llm)

    assert "generate_image" in _offered(fake_llm.requests[0])
    assert [r["model"] for r in fake_llm.image_requests] == ["gpt-image-1"]
    assert fake_llm.image_requests[0]["prompt"] == "a red fox in the snow"
    images = await ledger_rows(deps.db, kind="image", status="settled")
    assert [(r.user_id, r.channel_id, r.model) for r in images] == [("U1", "C1", "gpt-image-1")]
    assert images[0].cost_micro_usd == round(IMAGE_LIST_USD["gpt-image-1"] * MICRO)
    assert images[0].price_version.startswith("candor-local@candor-images-1")
    uploads = candor.slack.calls_to("files.completeUploadExternal")
    assert [(u.body.get("channel_id"), u.body.get("thread_ts")) for u in uploads] == [("C1", root)]
    answer = [m for m in candor.slack.messages("C1", thread_ts=root) if m.ephemeral_to is None]
    assert "Here is a red fox in the snow." in answer[-1].visible_text


async def test_an_admin_price_per_image_wins(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    await _allow_images(candor, deps)
    reply = await _admin(candor, "image-price gpt-image-1 0.05")
    assert "$0.0500" in reply

    await _draw(candor, fake_llm)

    images = await ledger_rows(deps.db, kind="image", status="settled")
    assert [r.cost_micro_usd for r in images] == [50_000]
    assert images[0].price_version.startswith("override@")


async def test_image_generation_is_off_without_an_image_model(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    await _allow_images(candor, deps, model=None)
    fake_llm.enqueue("I can't draw here.")
    await candor.send.event(app_mention("<@UBOT> draw me a red fox"))
    await candor.idle()

    assert "generate_image" not in _offered(fake_llm.requests[0])
    assert fake_llm.image_requests == []
    assert await ledger_rows(deps.db, kind="image") == []


async def test_image_model_refuses_what_is_not_a_model_name(candor: Candor) -> None:
    reply = await _admin(candor, 'image-model "gpt image; drop" <#C1|eng>')
    assert reply == "The image model must be a model name such as `gpt-image-1`, or `off`."
