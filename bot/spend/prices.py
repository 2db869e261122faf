"""Model prices: a pinned table shipped in the package, admin overrides in the database.

`bot/spend/prices.json` lists input, cached-input and output prices in USD per 1M tokens for
the models we know, with a `version` string that every ledger row records. Nothing is
fetched at run time: prices change when we ship a new table or an admin overrides a model
(`set_price`), and the override wins over the table.

Prices are held as integer micro-USD per 1M tokens, so a call's cost is exact integer
arithmetic: `tokens * price` summed, then divided by 1M and rounded *up* (a call is never
billed less than it cost). OpenAI's `prompt_tokens` includes the cached ones, so

    cost = (prompt - cached) * input + cached * cached_input + completion * output

and reasoning tokens are already part of `completion_tokens`.

A model missing from both is billed at the configured default
(`CANDOR_BUDGET_UNKNOWN_MODEL_*`) and logged once per model and process; it never fails
a call. Dated snapshots (`gpt-4o-2024-08-06`) and provider prefixes (`openai/gpt-4o`)
resolve to their family's price; other names are not guessed at, since a prefix match
could bill `o3-pro` at `o3`'s price.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.spend_models import ModelPriceRow
from bot.settings import BudgetSettings

log = logging.getLogger(__name__)

MICRO = 1_000_000
PER_TOKENS = 1_000_000
_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class ModelPrice:
    """What one model costs, in micro-USD per 1M tokens, and where the price came from."""

    model: str
    input_micro_usd_per_m: int
    cached_input_micro_usd_per_m: int
    output_micro_usd_per_m: int
    version: str
    source: str  # "table", "override" or "default"

    def cost_micro_usd(
        self, *, prompt_tokens: int, cached_tokens: int = 0, completion_tokens: int = 0
    ) -> int:
        """The exact cost of a call, rounded up to a whole micro-USD."""
        cached = max(0, min(cached_tokens, prompt_tokens))
        total = (
            (prompt_tokens - cached) * self.input_micro_usd_per_m
            + cached * self.cached_input_micro_usd_per_m
            + max(0, completion_tokens) * self.output_micro_usd_per_m
        )
        return -(-total // PER_TOKENS)

    def as_usd_per_m(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input": self.input_micro_usd_per_m / MICRO,
            "cached_input": self.cached_input_micro_usd_per_m / MICRO,
            "output": self.output_micro_usd_per_m / MICRO,
            "version": self.version,
            "source": self.source,
        }


def usd_to_micro(usd: float) -> int:
    return round(usd * MICRO)


def normalize_model(model: str) -> str:
    """`openai/gpt-4o-2024-08-06` -> `gpt-4o`: the name the price table uses."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    return _DATE_SUFFIX.sub("", name)


@dataclass(frozen=True)
class PriceTable:
    """The pinned table from `bot/spend/prices.json`."""

    version: str
    prices: dict[str, ModelPrice]

    @classmethod
    def load(cls, data: dict[str, Any] | None = None) -> PriceTable:
        """Read the shipped table (or `data` in the same shape)."""
        if data is None:
            raw = resources.files("bot.spend").joinpath("prices.json").read_text(encoding="utf-8")
            data = json.loads(raw)
        version = str(data["version"])
        prices: dict[str, ModelPrice] = {}
        for model, entry in data["models"].items():
            prices[model] = ModelPrice(
                model=model,
                input_micro_usd_per_m=usd_to_micro(float(entry["input"])),
                cached_input_micro_usd_per_m=usd_to_micro(
                    float(entry.get("cached_input", entry["input"]))
                ),
                output_micro_usd_per_m=usd_to_micro(float(entry.get("output", 0.0))),
                version=version,
                source="table",
            )
        return cls(version=version, prices=prices)


class PriceBook:
    """Resolves a model's price: admin override, then the shipped table, then the default."""

    def __init__(self, budget: BudgetSettings, table: PriceTable | None = None) -> None:
        self.table = table or PriceTable.load()
        self.budget = budget
        # Only decides whether to log again; replicas disagreeing here is harmless.
        self._warned: set[str] = set()

    def default_price(self, model: str) -> ModelPrice:
        input_price = usd_to_micro(self.budget.unknown_model_input_usd_per_m)
        return ModelPrice(
            model=model,
            input_micro_usd_per_m=input_price,
            cached_input_micro_usd_per_m=input_price,
            output_micro_usd_per_m=usd_to_micro(self.budget.unknown_model_output_usd_per_m),
            version="default",
            source="default",
        )

    async def price_for(self, session: AsyncSession, model: str) -> ModelPrice:
        """The price that applies to `model` now (one small query for overrides)."""
        names = list(dict.fromkeys([model, model.strip().lower(), normalize_model(model)]))
        rows = (
            await session.execute(select(ModelPriceRow).where(ModelPriceRow.model.in_(names)))
        ).scalars()
        by_name = {row.model: row for row in rows}
        for name in names:
            if name in by_name:
                return _override_price(by_name[name])
        for name in names:
            if name in self.table.prices:
                return self.table.prices[name]
        if model not in self._warned:
            self._warned.add(model)
            log.warning(
                "No price for model %r: billing it at the default of $%.2f / $%.2f per 1M "
                "input / output tokens until an admin sets one.",
                model,
                self.budget.unknown_model_input_usd_per_m,
                self.budget.unknown_model_output_usd_per_m,
            )
        return self.default_price(model)

    async def list_prices(self, session: AsyncSession) -> list[ModelPrice]:
        """Every known price, overrides replacing table entries, sorted by model."""
        merged = dict(self.table.prices)
        for row in (await session.execute(select(ModelPriceRow))).scalars():
            merged[row.model] = _override_price(row)
        return [merged[name] for name in sorted(merged)]


def _override_price(row: ModelPriceRow) -> ModelPrice:
    return ModelPrice(
        model=row.model,
        input_micro_usd_per_m=row.input_micro_usd_per_m,
        cached_input_micro_usd_per_m=row.cached_input_micro_usd_per_m,
        output_micro_usd_per_m=row.output_micro_usd_per_m,
        version=f"override@{_stamp(row.updated_at)}",
        source="override",
    )


def _stamp(when: datetime) -> str:
    return when.strftime("%Y%m%dT%H%M%S")


async def set_price(
    session: AsyncSession,
    *,
    model: str,
    input_usd_per_m: float,
    output_usd_per_m: float,
    cached_input_usd_per_m: float | None,
    now: datetime,
    by: str | None = None,
) -> ModelPrice:
    """Add or replace an admin price for `model` (USD per 1M tokens)."""
    if min(input_usd_per_m, output_usd_per_m, cached_input_usd_per_m or 0.0) < 0:
        raise ValueError("prices cannot be negative")
    name = model.strip().lower()
    if not name:
        raise ValueError("model name is empty")
    row = await session.get(ModelPriceRow, name)
    if row is None:
        row = ModelPriceRow(model=name)
        session.add(row)
    row.input_micro_usd_per_m = usd_to_micro(input_usd_per_m)
    row.cached_input_micro_usd_per_m = usd_to_micro(
        input_usd_per_m if cached_input_usd_per_m is None else cached_input_usd_per_m
    )
    row.output_micro_usd_per_m = usd_to_micro(output_usd_per_m)
    row.updated_at = now
    row.updated_by = by
    await session.flush()
    return _override_price(row)


async def remove_price_override(session: AsyncSession, *, model: str) -> bool:
    """Drop the admin price for `model`; True if there was one."""
    result = await session.execute(
        delete(ModelPriceRow)
        .where(ModelPriceRow.model == model.strip().lower())
        .returning(ModelPriceRow.model)
    )
    return result.first() is not None
