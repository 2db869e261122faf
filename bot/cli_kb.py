"""`candor kb ...`: the knowledge base from the command line (wired when knowledge/ lands)."""

from __future__ import annotations

import argparse
from typing import Any

from bot.settings import Settings


def add_kb_parser(sub: Any) -> None:
    kb = sub.add_parser("kb", help="manage the knowledge base")
    kb.add_subparsers(dest="kb_command", required=True).add_parser("list", help="list sources")


async def run_kb(args: argparse.Namespace, settings: Settings) -> int:
    print("The knowledge base commands are not available in this build yet.")
    return 1
