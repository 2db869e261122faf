"""Model prices: list prices from `genai-prices`, a small local table, admin overrides.

A model's price is resolved in this order, and the first that knows it wins:

1. an admin override in the database (`/candor prices set`, `set_price`);
2. the local table `bot/spend/prices.json`: models with no list price, such as the bundled
   offline model (`candor local-llm`) at $0;
3. list prices from `genai-prices` (Pydantic's maintained price database): cached-input
   rates, service tiers (`flex`, `priority`, read from the response's `service_tier`),
   tiered prices and prices that changed over time (the one in force at the call's time,
   from the injected clock). Its data ships inside the package, so nothing is fetched at run
   time; we never start its auto-updater, and a price changes when the package is upgraded;
4. the configured default (`CANDOR_BUDGET_UNKNOWN_MODEL_*`), logged once per model and
   process; an unknown model never fails a call.

Every price carries `source` and `version`, and the ledger's `price_version` column records
`version`, which names both (`genai-prices@0.2.3`, `candor-local@candor-local-2`,
`override@20250901T120000`, `default`), so a row can always say what billed it.

Prices are shown as integer micro-USD per 1M tokens; a call's cost is exact (integer or
`Decimal` arithmetic), rounded *up* to a whole micro-USD (a call is never billed less than it
cost). OpenAI's `prompt_tokens` includes the cached ones, so for a flat price

    cost = (prompt - cached) * input + cached * cached_input + completion * output

and reasoning tokens are already part of `completion_tokens`. A list price with tiers (or any
price part besides input, cached input and output) is computed by `genai-prices` itself (the
tier is chosen by the prompt's size); a plain list price, which most are, is computed with the
formula above from integer rates taken once from its `Decimal`s, because `calc_price` costs
tens of microseconds and runs twice per answer. Both give the same micro-USD (see `_FlatRates`).

Generated images are billed per image (`image_price_for`): an admin price
(`/candor image-price`), the list prices in `IMAGE_LIST_USD`, else `DEFAULT_IMAGE_USD`.

Dated snapshots (`gpt-4o-2024-08-06`) and provider prefixes (`openai/gpt-4o`) resolve to
their family's price in the local table and overrides; `genai-prices` has its own matching
rules per model, which are exact enough not to bill `o3-pro` at `o3`'s price.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import MAX_PREC, ROUND_CEILING, Context, Decimal
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.spend_models import ImagePriceRow, ModelPriceRow
from bot.db.statements import Executor, table
from bot.settings import BudgetSettings

if TYPE_CHECKING:
    from genai_prices.units import UnitDef, UnitRegistry

log = logging.getLogger(__name__)

MICRO = 1_000_000
PER_TOKENS = 1_000_000
_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")

OVERRIDE = "override"
LOCAL = "candor-local"
LIST = "genai-prices"
DEFAULT = "default"
#: Service tiers billed at the standard price (no variant in the price data).
_STANDARD_TIERS = frozenset({"", "default", "auto", "standard"})

#: Models `list_prices` shows even when nobody has used or overridden them.
FEATURED_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "text-embedding-3-small",
    "text-embedding-3-large",
)


@dataclass(frozen=True)
class ModelPrice:
    """What one model costs, in micro-USD per 1M tokens, and where the price came from.

    `source` is `override`, `candor-local`, `genai-prices` or `default`; `version` names the
    source and its version and is what the ledger row records. `list_price` is the
    `genai-prices` price object when the price came from there: it computes the cost itself
    (tiers included).
    """

    model: str
    input_micro_usd_per_m: int
    cached_input_micro_usd_per_m: int
    output_micro_usd_per_m: int
    version: str
    source: str
    matched: str = ""  # the model id the source knows it by, e.g. `openai/gpt-4o`
    service_tier: str | None = None
    list_price: Any = field(default=None, compare=False, repr=False)
    #: `list_price` as integer rates when it is plain (`_flat_rates`), else None.
    _flat: _FlatRates | None = field(init=False, default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.list_price is not None:
            object.__setattr__(self, "_flat", _flat_rates(self.list_price))

    def cost_micro_usd(
        self, *, prompt_tokens: int, cached_tokens: int = 0, completion_tokens: int = 0
    ) -> int:
        """The exact cost of a call, rounded up to a whole micro-USD."""
        prompt = max(0, prompt_tokens)
        cached = max(0, min(cached_tokens, prompt))
        completion = max(0, completion_tokens)
        if self.list_price is not None:
            flat = self._flat
            if flat is not None:
                scaled = (
                    (prompt - cached) * flat.input
                    + cached * flat.cached_input
                    + completion * flat.output
                )
                if scaled < _DECIMAL_EXACT:
                    return -(-scaled // flat.scale)
            return self._list_cost(prompt, cached, completion)
        total = (
            (prompt - cached) * self.input_micro_usd_per_m
            + cached * self.cached_input_micro_usd_per_m
            + completion * self.output_micro_usd_per_m
        )
        return -(-total // PER_TOKENS)

    def _list_cost(self, prompt: int, cached: int, completion: int) -> int:
        """The cost as `genai-prices` computes it (tiers and every other price part)."""
        from genai_prices import Usage as ListUsage

        usage = ListUsage(input_tokens=prompt, cache_read_tokens=cached, output_tokens=completion)
        total_usd = Decimal(self.list_price.calc_price(usage)["total_price"])
        return int((total_usd * MICRO).to_integral_value(rounding=ROUND_CEILING))

    def applies_at_tier(self, service_tier: str | None) -> bool:
        """Whether this price is also the one for a call served at `service_tier`.

        Only list prices have tier variants (`flex`, `priority`); an override, the local
        table and the default bill every tier alike. So a settle can reuse the price its
        reserve looked up unless the response names a tier with a price of its own.
        """
        if self.source != LIST:
            return True
        tier = (service_tier or "").strip().lower()
        return (self.service_tier or "") == ("" if tier in _STANDARD_TIERS else tier)

    @property
    def origin(self) -> str:
        """Where this price comes from, in words (for `candor prices show`)."""
        if self.source == OVERRIDE:
            return f"admin override ({self.version})"
        if self.source == LOCAL:
            return f"local table ({self.version})"
        if self.source == LIST:
            tier = f", {self.service_tier} tier" if self.service_tier else ""
            return f"list price, {self.version} as {self.matched}{tier}"
        return "configured default (unknown model)"

    def as_usd_per_m(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input": self.input_micro_usd_per_m / MICRO,
            "cached_input": self.cached_input_micro_usd_per_m / MICRO,
            "output": self.output_micro_usd_per_m / MICRO,
            "version": self.version,
            "source": self.source,
            "origin": self.origin,
        }


def usd_to_micro(usd: float) -> int:
    return round(usd * MICRO)


def normalize_model(model: str) -> str:
    """`openai/gpt-4o-2024-08-06` -> `gpt-4o`: the family name overrides and the local table use."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    return _DATE_SUFFIX.sub("", name)


@dataclass(frozen=True)
class PriceTable:
    """The local table from `bot/spend/prices.json` (models that have no list price)."""

    version: str
    prices: dict[str, ModelPrice]

    @classmethod
    def load(cls, data: dict[str, Any] | None = None) -> PriceTable:
        """Read the shipped table (or `data` in the same shape)."""
        if data is None:
            raw = resources.files("bot.spend").joinpath("prices.json").read_text(encoding="utf-8")
            data = json.loads(raw)
        version = f"{LOCAL}@{data['version']}"
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
                source=LOCAL,
                matched=model,
            )
        return cls(version=version, prices=prices)


class ListPrices:
    """List prices from the `genai-prices` package's bundled data (never auto-updated).

    `provider` is tried first (our endpoint speaks OpenAI's API, so `openai`); a name with a
    provider prefix (`anthropic/claude-...`) is looked up at that provider, and a name no
    provider claims is left to `genai-prices`' own matching.
    """

    def __init__(self, provider: str = "openai") -> None:
        import genai_prices

        self.provider = provider
        self.version = f"{LIST}@{genai_prices.__version__}"

    def price(
        self, model: str, *, at: datetime, service_tier: str | None = None
    ) -> ModelPrice | None:
        from genai_prices import data_snapshot

        snapshot = data_snapshot.get_snapshot()
        name = model.strip().lower()
        prefix, _, bare = name.rpartition("/")
        attempts: list[tuple[str, str | None]] = []
        if prefix:
            attempts.append((bare, prefix))
        attempts += [(name, self.provider), (name, None)]
        for ref, provider_id in attempts:
            try:
                provider, info = snapshot.find_provider_model(ref, None, provider_id, None)
            except LookupError:
                continue
            tier = (service_tier or "").strip().lower()
            context = None if tier in _STANDARD_TIERS else {"service_tier": tier}
            listed = info.get_prices(at, context)
            return ModelPrice(
                model=model,
                input_micro_usd_per_m=_per_m(listed.input_mtok),
                cached_input_micro_usd_per_m=_per_m(
                    listed.cache_read_mtok
                    if listed.cache_read_mtok is not None
                    else listed.input_mtok
                ),
                output_micro_usd_per_m=_per_m(listed.output_mtok),
                version=self.version,
                source=LIST,
                matched=f"{provider.id}/{info.id}",
                service_tier=tier if context else None,
                list_price=listed,
            )
        return None


class _FlatRates(NamedTuple):
    """A plain list price as integers: `rate / scale` is USD per 1M tokens.

    A call's cost in micro-USD is then `sum(tokens * rate) / scale`, rounded up, with no
    `Decimal`, usage object or unit lookup in sight. `calc_price` computes the same sum in
    `Decimal` (each part `price * tokens / 1_000_000`) in the default 28-digit context (Candor
    never changes it), and every step is exact while `sum(tokens * rate)` has fewer than 28
    digits: no coefficient it forms is larger than that sum (`* MICRO` only appends zeros).
    `cost_micro_usd` checks that bound (`_DECIMAL_EXACT`) and leaves a larger call, where
    `calc_price` itself rounds, to `calc_price`; so both ways give the same micro-USD.
    """

    input: int
    cached_input: int
    output: int
    scale: int


#: Below this, `calc_price`'s `Decimal` arithmetic is exact (the default context's 28 digits).
_DECIMAL_EXACT = 10**28
#: The price parts `_FlatRates` computes, and the usage units they price.
_FLAT_KEYS = frozenset({"input_mtok", "cache_read_mtok", "output_mtok"})
_FLAT_UNITS = ("input_tokens", "cache_read_tokens", "output_tokens")
#: Scales a rate to an integer without rounding it, however many digits it has.
_UNROUNDED = Context(prec=MAX_PREC)


def _flat_rates(listed: Any) -> _FlatRates | None:
    """`listed` (a `genai-prices` `ModelPrice`) as integer rates, or None unless it is plain.

    Plain: no tiers, every part a finite non-negative `Decimal` that `calc_price` accepts, and
    any part besides input, cached input and output one that a usage of only those tokens
    leaves at zero (`_inert`: web searches, audio, cache writes). Anything else, a per-request
    price above all, is left to `calc_price`.
    """
    from genai_prices.types import ModelPrice as ListModelPrice

    if type(listed) is not ListModelPrice:
        return None
    rates: dict[str, Decimal] = {}
    # calc_price prices exactly the public, non-None entries of the object's __dict__.
    for key, value in vars(listed).items():
        if value is None or key.startswith("_"):
            continue
        if type(value) is not Decimal or not value.is_finite() or value < 0:
            return None  # tiered, or a value calc_price refuses
        rates[key] = value
    if not _plain_parts(tuple(rates)):
        return None
    zero = Decimal(0)
    input_rate = rates.get("input_mtok", zero)
    # Without a cached-input price, calc_price bills cached tokens as input tokens.
    cached_rate = rates.get("cache_read_mtok", input_rate)
    output_rate = rates.get("output_mtok", zero)
    places = max(0, -_exponent(input_rate), -_exponent(cached_rate), -_exponent(output_rate))
    return _FlatRates(
        input=int(input_rate.scaleb(places, _UNROUNDED)),
        cached_input=int(cached_rate.scaleb(places, _UNROUNDED)),
        output=int(output_rate.scaleb(places, _UNROUNDED)),
        scale=10**places,
    )


@functools.cache
def _plain_parts(keys: tuple[str, ...]) -> bool:
    """Whether a price of these parts (flat `Decimal`s) is plain. Cached: the check takes
    tens of microseconds, and every list price lookup asks."""
    from genai_prices.validation import validate_priced_units

    registry = _unit_registry()
    try:
        units = [registry.unit_for_price_key(key) for key in keys]
    except KeyError:
        return False  # a part calc_price does not know: it warns (and ignores it)
    for key, unit in zip(keys, units, strict=True):
        if key not in _FLAT_KEYS and not _inert(unit, registry):
            return False
    try:
        validate_priced_units(units, registry)
    except ValueError:
        return False  # calc_price refuses this price (e.g. cached input without input)
    return True


def _inert(unit: UnitDef, registry: UnitRegistry) -> bool:
    """Whether `calc_price` counts zero of `unit` for a usage of input, cache-read and output
    tokens, leaving the count of those as it is.

    It counts 1 request for a per-request price whatever the usage; it infers a unit the usage
    does not report as 0 unless the unit covers a reported one (`{tokens, input}` covers cache
    reads), and these three units form no join. A zero count takes nothing from the units
    around it, so only a unit covering one of the three, or `requests`, is not inert.
    """
    if unit.usage_key == "requests":
        return False
    dimensions = unit.dimensions.items()
    return not any(dimensions <= registry.units[key].dimensions.items() for key in _FLAT_UNITS)


@functools.cache
def _unit_registry() -> UnitRegistry:
    """`genai-prices`' unit registry, built once from its bundled unit data as it builds its own."""
    from genai_prices.data_units import unit_data
    from genai_prices.units import UnitRegistry

    return UnitRegistry(unit_data)


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite, checked by the caller
    return exponent


def _per_m(value: Any) -> int:
    """A `genai-prices` USD-per-1M value (plain or tiered) as micro-USD (the base tier)."""
    if value is None:
        return 0
    base = getattr(value, "base", value)
    return int((Decimal(base) * MICRO).to_integral_value(rounding=ROUND_CEILING))


class PriceBook:
    """Resolves a model's price: override, local table, list price, then the default."""

    def __init__(
        self,
        budget: BudgetSettings,
        table: PriceTable | None = None,
        list_prices: ListPrices | None = None,
    ) -> None:
        self.table = table or PriceTable.load()
        self.list = list_prices or ListPrices()
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
            version=DEFAULT,
            source=DEFAULT,
        )

    async def price_for(
        self,
        session: Executor,
        model: str,
        *,
        at: datetime,
        service_tier: str | None = None,
    ) -> ModelPrice:
        """The price that applies to `model` at `at` (one small query for overrides).

        `service_tier` is the tier the response says it was served at; list prices have
        variants for some tiers (`flex`, `priority`), the others bill at the standard price.
        """
        rows = await session.execute(_OVERRIDES, {"b_names": override_names(model)})
        return self.resolve(model, rows, at=at, service_tier=service_tier)

    def resolve(
        self,
        model: str,
        overrides: Iterable[Any],
        *,
        at: datetime,
        service_tier: str | None = None,
    ) -> ModelPrice:
        """`price_for`, given the override rows read for `override_names(model)` (rows
        with `ModelPriceRow`'s price columns)."""
        names = override_names(model)
        by_name = {row.model: row for row in overrides}
        for name in names:
            if name in by_name:
                return _override_price(by_name[name])
        for name in names:
            if name in self.table.prices:
                return self.table.prices[name]
        listed = self.list.price(model, at=at, service_tier=service_tier)
        if listed is not None:
            return listed
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

    async def list_prices(
        self,
        session: AsyncSession,
        *,
        models: Iterable[str] = (),
        at: datetime,
    ) -> list[ModelPrice]:
        """The prices of the featured models, `models`, the local table and every override,
        each as `price_for` would bill it, sorted by model."""
        merged: dict[str, ModelPrice] = dict(self.table.prices)
        for name in dict.fromkeys([*FEATURED_MODELS, *models]):
            if name in merged:
                continue
            listed = self.list.price(name, at=at)
            merged[name] = listed if listed is not None else self.default_price(name)
        for row in (await session.execute(select(ModelPriceRow))).scalars():
            merged[row.model] = _override_price(row)
        return [merged[name] for name in sorted(merged)]


def override_names(model: str) -> list[str]:
    """The names an admin's price for `model` may be stored under, most exact first."""
    return list(dict.fromkeys([model, model.strip().lower(), normalize_model(model)]))


_PRICES = table(ModelPriceRow)
#: The price columns of an override, in `_override_price`'s names.
OVERRIDE_COLUMNS = (
    _PRICES.c.model,
    _PRICES.c.input_micro_usd_per_m,
    _PRICES.c.cached_input_micro_usd_per_m,
    _PRICES.c.output_micro_usd_per_m,
    _PRICES.c.updated_at,
)
#: The overrides of any of `b_names` (`override_names`).
OVERRIDES_OF_NAMES = _PRICES.c.model.in_(bindparam("b_names", expanding=True))
_OVERRIDES = select(*OVERRIDE_COLUMNS).where(OVERRIDES_OF_NAMES)


def _override_price(row: Any) -> ModelPrice:
    """A `ModelPriceRow`, or a row of its columns (`_OVERRIDES`), as a price."""
    return ModelPrice(
        model=row.model,
        input_micro_usd_per_m=row.input_micro_usd_per_m,
        cached_input_micro_usd_per_m=row.cached_input_micro_usd_per_m,
        output_micro_usd_per_m=row.output_micro_usd_per_m,
        version=f"{OVERRIDE}@{_stamp(row.updated_at)}",
        source=OVERRIDE,
        matched=row.model,
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


# --- images -------------------------------------------------------------------------------

#: List prices per image at the default size and quality (USD), by model family; an admin
#: price (`image_prices`, `/candor image-price`) wins, and an unknown model is billed at
#: `DEFAULT_IMAGE_USD` (on the high side, so an unknown model never spends a budget unseen).
IMAGE_LIST_USD = {
    "gpt-image-1": 0.042,
    "gpt-image-1-mini": 0.011,
    "dall-e-3": 0.04,
    "dall-e-2": 0.02,
}
IMAGE_LIST_VERSION = "candor-images-1"
DEFAULT_IMAGE_USD = 0.08


@dataclass(frozen=True)
class ImagePrice:
    """What one generated image of `model` costs, and where the price came from."""

    model: str
    micro_usd_per_image: int
    version: str
    source: str

    def cost_micro_usd(self, images: int) -> int:
        return max(0, images) * self.micro_usd_per_image


async def image_price_for(session: AsyncSession, model: str) -> ImagePrice:
    """The price of one image of `model`: admin override, list price, then the default."""
    names = list(dict.fromkeys([model.strip().lower(), normalize_model(model)]))
    rows = (
        await session.execute(select(ImagePriceRow).where(ImagePriceRow.model.in_(names)))
    ).scalars()
    by_name = {row.model: row for row in rows}
    for name in names:
        if name in by_name:
            row = by_name[name]
            return ImagePrice(
                row.model, row.micro_usd_per_image, f"{OVERRIDE}@{_stamp(row.updated_at)}", OVERRIDE
            )
    for name in names:
        if name in IMAGE_LIST_USD:
            return ImagePrice(
                name, usd_to_micro(IMAGE_LIST_USD[name]), f"{LOCAL}@{IMAGE_LIST_VERSION}", LOCAL
            )
    return ImagePrice(model, usd_to_micro(DEFAULT_IMAGE_USD), DEFAULT, DEFAULT)


async def set_image_price(
    session: AsyncSession, *, model: str, usd_per_image: float, now: datetime, by: str | None = None
) -> ImagePrice:
    """Add or replace an admin price per image for `model`."""
    if usd_per_image < 0:
        raise ValueError("prices cannot be negative")
    name = model.strip().lower()
    if not name:
        raise ValueError("model name is empty")
    row = await session.get(ImagePriceRow, name)
    if row is None:
        row = ImagePriceRow(model=name)
        session.add(row)
    row.micro_usd_per_image = usd_to_micro(usd_per_image)
    row.updated_at = now
    row.updated_by = by
    await session.flush()
    return ImagePrice(name, row.micro_usd_per_image, f"{OVERRIDE}@{_stamp(now)}", OVERRIDE)
