"""Generated images on Slack: `generate_image` (bot.tools.images) posts into the thread.

`register(app, deps)` attaches an `ImageStudio` (the OpenAI-compatible images endpoint,
per-image billing) to the conversation's `Toolbox`, with `SlackImagePoster`: the image is
uploaded into the thread being answered (`files_upload_v2`, which is
`files.getUploadURLExternal` + `files.completeUploadExternal`), or, when the endpoint
returned only a URL, shown in an image block there.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps
from bot.spend.images import ImageBilling
from bot.tools.base import ToolContext
from bot.tools.images import ImageStudio
from handlers import render
from handlers.events import surface_of

FILENAME = "candor-image.png"


class SlackImagePoster:
    """Puts a generated image in the thread of the turn."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def post_image(
        self, ctx: ToolContext, *, prompt: str, data: bytes | None, url: str | None
    ) -> None:
        title = render.defuse_pings(" ".join(prompt.split()))[:200] or "Generated image"
        if data is not None:
            await self.client.files_upload_v2(
                channel=ctx.channel_id,
                thread_ts=ctx.thread_ts,
                file=data,
                filename=FILENAME,
                title=title,
            )
            return
        if url:
            await self.client.chat_postMessage(
                channel=ctx.channel_id,
                thread_ts=ctx.thread_ts,
                text=title,
                blocks=[{"type": "image", "image_url": url, "alt_text": title}],
            )


def register(app: AsyncApp, deps: Deps) -> None:
    """Attach image generation to the tools of every answer (used where an admin set an
    image model and allowed the built-in)."""
    client = surface_of(deps).client
    billing = ImageBilling(deps.db, deps.settings, deps.clock)
    studio = ImageStudio(deps.openai, billing, SlackImagePoster(client))
    deps.manager.tools.attach(images=studio)
