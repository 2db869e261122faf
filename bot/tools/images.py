"""Image generation for the `generate_image` built-in: the images endpoint, billed per image.

`ImageStudio.generate` holds the image's price in the user's budget (`bot.spend.images`;
over budget, nothing is generated and the model is told in one sentence), calls the
OpenAI-compatible images endpoint (`client.images.generate`) with the channel's
`image_model`, bills the images it returned, and hands the picture to the surface's
`ImagePoster`, which puts it in the thread being answered (Slack: an upload with
`files.getUploadURLExternal` / `files.completeUploadExternal`, or the image's URL). A
failed call releases the hold; the provider's error text never reaches the model.
"""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Protocol

from openai import AsyncOpenAI, OpenAIError

from bot.errors import CandorError
from bot.spend.images import ImageBilling
from bot.tools.base import ToolContext, ToolOutput

log = logging.getLogger(__name__)

#: Longest prompt sent to the images endpoint.
MAX_PROMPT_CHARS = 2000
SIZES = ("1024x1024", "1024x1536", "1536x1024", "auto")


class ImagePoster(Protocol):
    """Puts a generated image in the thread of `ctx` (bytes, or a URL to show)."""

    async def post_image(
        self, ctx: ToolContext, *, prompt: str, data: bytes | None, url: str | None
    ) -> None: ...


class ImageStudio:
    """The images endpoint, the per-image billing and where the image goes."""

    def __init__(
        self, client: AsyncOpenAI, billing: ImageBilling, poster: ImagePoster | None = None
    ) -> None:
        self.client = client
        self.billing = billing
        self.poster = poster

    async def generate(self, ctx: ToolContext, prompt: str, size: str | None) -> ToolOutput:
        model = ctx.image_model
        if not model:
            return ToolOutput("Image generation is turned off here.", error=True)
        prompt = prompt.strip()[:MAX_PROMPT_CHARS]
        if not prompt:
            return ToolOutput("generate_image needs a non-empty `prompt`.", error=True)
        call_id = f"{ctx.event_id or 'image'}:image:{uuid.uuid4().hex[:12]}"
        try:
            hold = await self.billing.reserve(
                workspace_id=ctx.workspace_id,
                channel_id=ctx.channel_id,
                user_id=ctx.user_id,
                model=model,
                images=1,
                call_id=call_id,
            )
        except CandorError as exc:
            return ToolOutput(exc.user_message, error=True)
        try:
            response = await self.client.images.generate(
                model=model,
                prompt=prompt,
                n=1,
                size=size if size in SIZES else "1024x1024",
            )
        except OpenAIError as exc:
            log.warning("Image generation failed: %s", type(exc).__name__)
            await self.billing.release(hold, reason="image_error")
            return ToolOutput(
                f"The image could not be generated ({type(exc).__name__}).", error=True
            )
        images = list(response.data or [])
        await self.billing.settle(hold, images=len(images))
        if not images:
            return ToolOutput("The images endpoint returned no image.", error=True)
        first = images[0]
        data = base64.b64decode(first.b64_json) if first.b64_json else None
        if self.poster is None:
            return ToolOutput("The image was generated, but there is no thread to show it in.")
        try:
            await self.poster.post_image(ctx, prompt=prompt, data=data, url=first.url)
        except Exception as exc:
            log.warning("Could not post the generated image: %s", type(exc).__name__)
            return ToolOutput("The image was generated but could not be posted.", error=True)
        revised = f" (the model drew: {first.revised_prompt})" if first.revised_prompt else ""
        return ToolOutput(
            "The image is generated and already posted in this thread" + revised + ". "
            "Do not describe a link to it; say in a sentence what it shows."
        )
