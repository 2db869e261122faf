"""Billing generated images: per image, through the same ledger and budgets as chat.

`ImageBilling.reserve` holds the price of the images before the images endpoint is
called (one conditional upsert of the user's counter, as `SpendLedger.reserve` does; over
budget raises `OverBudget` and nothing is generated); `settle` bills the images the
endpoint returned, at the price in force (`bot.spend.prices.image_price_for`), in a
ledger row of kind `image` whose `price_version` names that price; `release` gives the
hold back when generation failed. A call id is billed once, like any call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.clock import Clock
from bot.db.engine import Database
from bot.ports import OverBudget
from bot.settings import Settings
from bot.spend import budgets, ledger, prices
from bot.spend.budgets import period_window
from bot.spend.ledger import HELD, SETTLED
from bot.spend.prices import MICRO, ImagePrice

IMAGE = "image"


@dataclass(frozen=True)
class ImageHold:
    """Money held for one image call until it is settled or released."""

    reservation_id: int
    price: ImagePrice


class ImageBilling:
    """Per-image billing in the spend ledger; see the module docstring."""

    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    def _now(self) -> datetime:
        return self.clock.now().astimezone(UTC)

    async def price(self, model: str) -> ImagePrice:
        async with self.db.sessions() as session:
            return await prices.image_price_for(session, model)

    async def reserve(
        self,
        *,
        workspace_id: str,
        channel_id: str,
        user_id: str,
        model: str,
        images: int,
        call_id: str,
    ) -> ImageHold:
        """Hold the price of `images` images, or raise `OverBudget` / `DuplicateCall`."""
        now = self._now()
        async with self.db.write() as session:
            # Reads before the first write: one session (see `SpendLedger.reserve`).
            price = await prices.image_price_for(session, model)
            budget = await budgets.get_budget(
                session, user_id=user_id, settings=self.settings.budget
            )
            window = period_window(now, budget.period, self.settings.budget.timezone)
            amount = price.cost_micro_usd(images)
            held = await ledger.hold_for_call(
                session,
                call_id=call_id,
                kind=IMAGE,
                values={
                    "workspace_id": workspace_id,
                    "channel_id": channel_id,
                    "user_id": user_id,
                    "model": model,
                    "period_key": window.key,
                    "amount_micro_usd": amount,
                },
                limit=None if budget.unlimited else budget.limit_micro_usd,
                now=now,
            )
            if isinstance(held, ledger.Refused):
                raise OverBudget(
                    spent_usd=held.spent / MICRO,
                    limit_usd=budget.limit_micro_usd / MICRO,
                    resets_at=window.end,
                )
        return ImageHold(held.reservation_id, price)

    async def settle(self, hold: ImageHold, *, images: int) -> int:
        """Bill `images` images; returns the cost in micro-USD (0 if already settled)."""
        now = self._now()
        cost = hold.price.cost_micro_usd(images)
        async with self.db.write() as session:
            row = await ledger.transition(
                session, reservation_id=hold.reservation_id, old=HELD, new=SETTLED, now=now
            )
            if row is None:
                return 0
            await ledger.insert_charge(
                session,
                call_id=row.call_id,
                kind=IMAGE,
                workspace_id=row.workspace_id,
                user_id=row.user_id,
                channel_id=row.channel_id,
                model=row.model,
                completion_tokens=0,
                cost_micro_usd=cost,
                price_version=f"{hold.price.version} x{images}"[:64],
                estimated=False,
                created_at=now,
            )
            await ledger.add_to_counter(
                session,
                user_id=row.user_id,
                period_key=row.period_key,
                spent=cost,
                held=-row.amount_micro_usd,
                now=now,
            )
        return cost

    async def release(self, hold: ImageHold, *, reason: str) -> None:
        """Give the hold back: no image was made."""
        async with self.db.write() as session:
            await ledger.release_hold(
                session, reservation_id=hold.reservation_id, reason=reason, now=self._now()
            )

    async def set_price(self, model: str, usd_per_image: float, *, by: str | None) -> ImagePrice:
        """An admin's price per image for `model`."""
        async with self.db.write() as session:
            return await prices.set_image_price(
                session, model=model, usd_per_image=usd_per_image, now=self._now(), by=by
            )
