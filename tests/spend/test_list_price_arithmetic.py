"""A list price costs a call exactly what `genai-prices`' own `calc_price` says it costs.

`ModelPrice.cost_micro_usd` skips `calc_price` for a plain list price (input, cached input
and output per 1M tokens, nothing tiered or per request) and does the sum itself in
integers. These tests hold it to `calc_price` for every price in the bundled snapshot and a
spread of usages, and check that a tiered price still changes past its threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from copy import copy
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

import pytest
from genai_prices import Usage, data_snapshot
from genai_prices.types import ModelPrice as ListModelPrice
from genai_prices.types import TieredPrices

from bot.clock import FixedClock
from bot.spend.prices import LIST, ListPrices, ModelPrice

Call = tuple[int, int, int]  # prompt tokens (cached ones included), cached, completion

#: At $1.0399999999999998 per 1M tokens (a price in the snapshot), this many input tokens
#: cost 4,991,999,999,999,998.0000000000000002 micro-USD, which `calc_price` rounds to 28
#: digits before the cost is rounded up: it bills 4,991,999,999,999,998, not ...999.
ROUNDED_CALL: Call = (4_799_999_999_999_999, 0, 0)
#: Empty, one token of each kind, small, odd, large, and so large that `calc_price`'s own
#: 28-digit `Decimal` arithmetic rounds.
SPREAD: list[Call] = [
    (0, 0, 0),
    (1, 0, 0),
    (1, 1, 0),
    (0, 0, 1),
    (1000, 400, 100),
    (12_345, 6_789, 321),
    (127_999, 0, 1),
    (128_001, 64_000, 777),
    (200_001, 1, 4_097),
    (1_000_003, 999_999, 65_537),
    (10**15, 10**14 + 7, 10**13 + 3),
    ROUNDED_CALL,
]


def tier_edges() -> list[Call]:
    """A call just at and just past every tier threshold in the snapshot."""
    starts: set[int] = set()
    for price in snapshot_prices():
        for value in vars(price).values():
            if isinstance(value, TieredPrices):
                starts.update(tier.start for tier in value.tiers)
    return [
        call for start in sorted(starts) for call in ((start, 0, 9), (start + 1, start // 3, 9))
    ]


def snapshot_prices() -> Iterator[ListModelPrice]:
    """Every price object in the snapshot: each model's prices over time, and each with every
    variant (service tier, batch, ...) laid over it as `get_prices` lays it."""
    for provider in data_snapshot.get_snapshot().providers:
        for info in provider.models:
            standard = (
                [info.prices]
                if isinstance(info.prices, ListModelPrice)
                else [conditional.prices for conditional in info.prices]
            )
            for price in standard:
                yield price
                for variant in info.price_variants or ():
                    merged = copy(price)
                    merged.__dict__.update(
                        {k: v for k, v in vars(variant.prices).items() if v is not None}
                    )
                    yield merged


def listed_prices(at: datetime) -> Iterator[ModelPrice]:
    """What `ListPrices` bills each snapshot model it finds at, at each of its service tiers."""
    for provider in data_snapshot.get_snapshot().providers:
        list_prices = ListPrices(provider=provider.id)
        for info in provider.models:
            tiers = {
                variant.when["service_tier"]
                for variant in info.price_variants or ()
                if set(variant.when) == {"service_tier"}
            }
            for tier in [None, *sorted(tiers)]:
                price = list_prices.price(info.id, at=at, service_tier=tier)
                if price is not None:
                    yield price


def wrap(listed: ListModelPrice) -> ModelPrice:
    return ModelPrice("m", 0, 0, 0, "v", LIST, list_price=listed)


def by_calc_price(listed: Any, call: Call) -> int:
    """The cost the way `cost_micro_usd` computed every list price before it had a fast path."""
    prompt, cached, completion = call
    usage = Usage(input_tokens=prompt, cache_read_tokens=cached, output_tokens=completion)
    total_usd = Decimal(listed.calc_price(usage)["total_price"])
    return int((total_usd * 1_000_000).to_integral_value(rounding=ROUND_CEILING))


def by_cost_micro_usd(price: ModelPrice, call: Call) -> int:
    prompt, cached, completion = call
    return price.cost_micro_usd(
        prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion
    )


def outcome(cost: Callable[[Any, Call], int], price: Any, call: Call) -> int | str:
    """The cost, or the error a price `calc_price` refuses ends in (it must be the same)."""
    try:
        return cost(price, call)
    except ValueError as exc:
        return f"ValueError: {exc}"


def disagreements(prices: Iterator[ModelPrice], calls: list[Call]) -> list[str]:
    seen: set[str] = set()
    found: list[str] = []
    for price in prices:
        key = repr(price.list_price)
        if key in seen:
            continue
        seen.add(key)
        for call in calls:
            ours = outcome(by_cost_micro_usd, price, call)
            theirs = outcome(by_calc_price, price.list_price, call)
            if ours != theirs:
                found.append(f"{price.list_price!r} {call}: {ours} != {theirs}")
    return found


def test_every_snapshot_price_costs_what_calc_price_says() -> None:
    found = disagreements(map(wrap, snapshot_prices()), SPREAD + tier_edges())
    assert found == []


def test_every_model_list_prices_knows_costs_what_calc_price_says(clock: FixedClock) -> None:
    prices = list(listed_prices(clock.now()))
    models = sum(len(provider.models) for provider in data_snapshot.get_snapshot().providers)
    assert len({p.matched for p in prices}) > 0.75 * models

    assert disagreements(iter(prices), SPREAD + tier_edges()) == []


def test_a_call_too_large_for_exact_decimals_is_billed_as_calc_price_bills_it() -> None:
    listed = ListModelPrice(input_mtok=Decimal("1.0399999999999998"))
    prompt = ROUNDED_CALL[0]

    cost = wrap(listed).cost_micro_usd(prompt_tokens=prompt)

    assert cost == by_calc_price(listed, ROUNDED_CALL) == 4_991_999_999_999_998


def test_a_plain_list_price_is_costed_without_calc_price(
    clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = {m: ListPrices().price(m, at=clock.now()) for m in ("gpt-4o-mini", "gpt-5")}

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("calc_price was called")

    monkeypatch.setattr(ListModelPrice, "calc_price", refuse)
    mini, gpt5 = prices["gpt-4o-mini"], prices["gpt-5"]
    assert mini is not None and gpt5 is not None
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens (330.75).
    assert mini.cost_micro_usd(prompt_tokens=1201, cached_tokens=400, completion_tokens=301) == 331
    # gpt-5: $1.25, $0.125, $10.
    assert gpt5.cost_micro_usd(prompt_tokens=1000, cached_tokens=0, completion_tokens=3) == 1280


def test_a_tiered_list_price_changes_past_its_threshold(clock: FixedClock) -> None:
    price = ListPrices().price("gpt-5.4", at=clock.now())
    assert price is not None and price.matched == "openai/gpt-5.4"

    # gpt-5.4: $2.50 input and $15 output per 1M tokens; $5 and $22.50 for every token of a
    # call whose prompt is over 272,000 tokens.
    assert price.cost_micro_usd(prompt_tokens=272_000, completion_tokens=1000) == 695_000
    assert price.cost_micro_usd(prompt_tokens=272_001, completion_tokens=1000) == 1_382_505
