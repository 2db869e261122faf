"""`candor prices show`: every price Candor bills at, and where each one comes from.

    candor prices show            models configured or in use, the local table, overrides
    candor prices show --json     the same as JSON (one object per model)

The sources, in the order they win: an admin override (`/candor prices set`), the local table
(`bot/spend/prices.json`: the offline model at $0), list prices from the `genai-prices`
package (its bundled data, never fetched at run time), and the configured default for
models nobody knows.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bot.settings import Settings


def add_prices_parser(sub: Any) -> None:
    prices = sub.add_parser("prices", help="show model prices and where they come from")
    prices_sub = prices.add_subparsers(dest="prices_command", required=True)
    show = prices_sub.add_parser("show", help="list prices (USD per 1M tokens) and sources")
    show.add_argument("--json", action="store_true", help="print one JSON array")


async def run_prices(args: argparse.Namespace, settings: Settings) -> int:
    from bot.deps import build_deps
    from bot.spend.guard import SpendLedger

    deps = await build_deps(settings)
    try:
        ledger = deps.spend
        assert isinstance(ledger, SpendLedger)
        rows = await ledger.list_prices()
    finally:
        await deps.close()
    if args.json:
        print(json.dumps([p.as_usd_per_m() for p in rows], indent=2))
        return 0
    width = max((len(p.model) for p in rows), default=5)
    print(f"{'model':<{width}}  {'input':>9} {'cached':>9} {'output':>9}  source")
    for p in rows:
        usd = p.as_usd_per_m()
        print(
            f"{p.model:<{width}}  {usd['input']:>9.4g} {usd['cached_input']:>9.4g} "
            f"{usd['output']:>9.4g}  {p.origin}"
        )
    print("USD per 1M tokens; an admin override wins over the list price.")
    return 0
