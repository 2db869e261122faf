"""`/candor image-model off|MODEL [#channel]` and `/candor image-price [MODEL USD]`.

Image generation (the `generate_image` built-in) is off until an admin names an image
model for a channel or the workspace (and allows the built-in with `/candor tools allow
builtin/generate_image`); each image is billed at its price per image, which admins can
set per model.
"""

from __future__ import annotations

from bot.admin import settings as validate
from bot.admin.settings import InvalidValue
from bot.admin.spend import usd_in_range
from bot.spend.images import ImageBilling
from bot.spend.prices import IMAGE_LIST_USD, MICRO
from handlers.commands.base import (
    Invocation,
    Subcommand,
    setting_command,
)

cmd_image_model = setting_command(
    "image-model",
    "image_model",
    "/candor image-model off|MODEL [#channel]",
    lambda raw, _: validate.parse_image_model(raw),
)


async def cmd_image_price(call: Invocation) -> str:
    billing = ImageBilling(call.deps.db, call.deps.settings, call.deps.clock)
    if not call.args or call.args[0].lower() == "show":
        lines = ["*Prices per generated image*"]
        for model in sorted(IMAGE_LIST_USD):
            price = await billing.price(model)
            lines.append(f"• `{model}`: ${price.micro_usd_per_image / MICRO:.4f} ({price.source})")
        return "\n".join(lines)
    if len(call.args) != 2:
        raise InvalidValue("Usage: `/candor image-price MODEL USD` (USD per image)")
    usd = parse_image_usd(call.args[1])
    price = await billing.set_price(call.args[0], usd, by=call.user_id)
    return (
        f":white_check_mark: Each `{price.model}` image now costs "
        f"${price.micro_usd_per_image / MICRO:.4f}."
    )


#: Highest price per image an admin may set (a typo guard).
IMAGE_PRICE_MAX_USD = 10.0


def parse_image_usd(raw: str) -> float:
    return usd_in_range(
        raw,
        maximum=IMAGE_PRICE_MAX_USD,
        message=(
            f"A price per image is in USD, from 0 to {IMAGE_PRICE_MAX_USD:g} "
            "(for example `/candor image-price gpt-image-1 0.04`)."
        ),
    )


SUBCOMMANDS = (
    Subcommand(
        "image-model",
        ("image-model off|MODEL [#channel]",),
        cmd_image_model,
        "the model of the generate_image tool (off by default)",
    ),
    Subcommand(
        "image-price",
        ("image-price [MODEL USD]",),
        cmd_image_price,
        "USD per generated image",
    ),
)
