"""`candor usage`: spend tables from the command line (wired when the ledger lands)."""

from __future__ import annotations

import argparse
from typing import Any

from bot.settings import Settings


def add_usage_parser(sub: Any) -> None:
    sub.add_parser("usage", help="show token spend")


async def run_usage(args: argparse.Namespace, settings: Settings) -> int:
    print("Usage reports are not available in this build yet.")
    return 1
