"""`candor export finetune`: approved answers as OpenAI chat fine-tuning JSONL.

    candor export finetune --out FILE.jsonl [--since YYYY-MM-DD] [--channel C]
                           [--include-private]

What counts as approved, and what each line holds, is `bot.review.export`'s. Whether a
channel is private is asked of Slack (`conversations.info`) when `SLACK_BOT_TOKEN` is set;
without it no channel can be checked, so every channel counts as private and only
`--include-private` exports anything. The file is written whole or not at all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bot.settings import ConfigError, Settings


def add_export_parser(sub: Any) -> None:
    export = sub.add_parser("export", help="export approved answers")
    export_sub = export.add_subparsers(dest="export_command", required=True)
    finetune = export_sub.add_parser(
        "finetune", help="OpenAI chat fine-tuning JSONL from 👍 answers and corrections"
    )
    finetune.add_argument("--out", required=True, help="the JSONL file to write")
    finetune.add_argument("--since", help="only answers from this date on (YYYY-MM-DD, UTC)")
    finetune.add_argument("--channel", help="only answers given in this channel (ID)")
    finetune.add_argument(
        "--include-private",
        action="store_true",
        help="also answers from private channels and DMs",
    )


def _since(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"--since must be a date like 2026-11-01, not {raw!r}.") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def run_export(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db.engine import ensure_ready
    from bot.deps import open_checked_database
    from bot.review.export import IsPrivate, finetune_examples

    since = _since(args.since)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ConfigError(f"--out: the folder {out.parent} does not exist.")
    db = open_checked_database(settings)
    try:
        await ensure_ready(db, migrate=db.is_sqlite)
        is_private: IsPrivate
        if settings.slack.bot_token is not None:
            from handlers.app import build_client
            from handlers.directory import SlackDirectory

            # The client opens a connection per call, so there is nothing to close.
            is_private = SlackDirectory(build_client(settings)).is_private
        else:

            async def is_private(_channel: str) -> bool:
                return True  # nothing to check against: keep it out unless asked

        async with db.sessions() as session:
            result = await finetune_examples(
                session,
                settings,
                is_private=is_private,
                since=since,
                channel=args.channel or None,
                include_private=args.include_private,
            )
    finally:
        await db.dispose()
    partial = out.with_name(out.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for example in result.examples:
            handle.write(json.dumps(example, ensure_ascii=False) + "\n")
    os.replace(partial, out)
    summary = (
        f"Wrote {len(result.examples)} examples to {out} "
        f"({result.approved} 👍 answers, {result.corrected} corrections)."
    )
    if result.skipped_private:
        summary += (
            f" Left out {result.skipped_private} from private channels or DMs"
            + ("" if settings.slack.bot_token else " (no SLACK_BOT_TOKEN to check privacy)")
            + "; add --include-private to export them."
        )
    print(summary, file=sys.stderr)
    return 0
