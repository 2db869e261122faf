"""`candor`: the command line, and the composition root.

This is the only module in `bot/` that may import `handlers/` (through `bot.cli.serve`, to
start the Slack app). Every subcommand builds its dependencies from `Settings` here and
hands them down; nothing below creates clients on its own.

    candor chat [--channel C] [--user U]           a REPL on the same manager as the bot
    candor chat --once "question" [--json]         one answer, for scripts
    candor serve [--http --port N] [--workers N]   the Slack app (Socket Mode or HTTP)
    candor db upgrade                              apply database migrations
    candor db check [--wait S]                     exit 0 once the database is migrated
    candor manifest [--http --url URL]             print the Slack app manifest
    candor local-llm [--port N]                    serve the bundled tiny model offline
    candor kb add|list|remove|search|reindex       the knowledge base
    candor usage [--user U] [--top] [--period P]   spend tables
    candor prices show [--json]                    prices and where each comes from
    candor tools list|allow|deny|readonly          tools and where they are allowed
    candor eval FILE.jsonl [--channel C] [--json]  how well the confidence flags answers
    candor jobs list | run NAME                    scheduled jobs (see bot.jobs)
    candor export finetune --out FILE.jsonl        approved answers as fine-tuning data

Failures print one sentence to stderr and exit non-zero (with `--json`, an object
`{"error": "..."}` on stdout instead); tracebacks only with `CANDOR_LOG_LEVEL=DEBUG`.
A bad setting is exit code 2, a failure while running is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bot import __version__
from bot.errors import CandorError
from bot.settings import ConfigError, Settings, load_settings

log = logging.getLogger("candor")

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="candor", description="Candor, a Slack assistant.")
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    parser.add_argument("--version", action="version", version=f"candor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="talk to Candor in the terminal")
    chat.add_argument("--channel", default="CLI", help="channel whose settings apply")
    chat.add_argument("--user", default="cli-user", help="user the spend is charged to")
    chat.add_argument("--workspace", default="local")
    chat.add_argument("--once", metavar="QUESTION", help="ask one question and exit")
    chat.add_argument("--json", action="store_true", help="with --once: print one JSON object")

    serve = sub.add_parser("serve", help="run the Slack app")
    serve.add_argument("--http", action="store_true", help="HTTP Events API instead of Socket Mode")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: one per core with QDRANT_URL, else 1)",
    )
    serve.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply all migrations")
    db_sub.add_parser("current", help="print the current revision")
    check = db_sub.add_parser("check", help="exit 0 only when the database is fully migrated")
    check.add_argument("--wait", type=float, default=0, help="seconds to keep waiting for it")

    manifest = sub.add_parser("manifest", help="print the Slack app manifest")
    manifest.add_argument("--http", action="store_true")
    manifest.add_argument("--url", default=None, help="public base URL for HTTP mode")

    local = sub.add_parser("local-llm", help="serve the bundled Gemma 3 270M model offline")
    local.add_argument("--port", type=int, default=8081)
    local.add_argument("--host", default="127.0.0.1")

    from bot.cli.eval import add_eval_parser
    from bot.cli.jobs import add_jobs_parser
    from bot.cli.kb import add_kb_parser
    from bot.cli.prices import add_prices_parser
    from bot.cli.tools import add_tools_parser
    from bot.cli.usage import add_usage_parser

    add_kb_parser(sub)
    add_usage_parser(sub)
    add_prices_parser(sub)
    add_tools_parser(sub)
    add_eval_parser(sub)
    add_jobs_parser(sub)
    from bot.cli.export import add_export_parser

    add_export_parser(sub)
    return parser


def _run(work: Coroutine[Any, Any, int], args: argparse.Namespace, settings: Settings) -> int:
    """Run a command; `serve` on the event loop `CANDOR_EVENT_LOOP` names (other commands
    are short and stay on asyncio's)."""
    choice = settings.candor.event_loop if args.command == "serve" else "asyncio"
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                work.close()
                raise ConfigError(
                    "CANDOR_EVENT_LOOP=uvloop, but uvloop is not installed: "
                    "run `pip install uvloop` or set CANDOR_EVENT_LOOP=auto."
                ) from None
        else:
            return uvloop.run(work)
    return asyncio.run(work)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.env_file)
    except ConfigError as exc:
        return _fail(args, str(exc), 2)
    for problem in settings.env_file_problems:
        print(f"candor: warning: {problem}.", file=sys.stderr)
    _configure_logging(args, settings)
    command = _commands()[args.command]
    try:
        return _run(command(args, settings), args, settings)
    except KeyboardInterrupt:
        return 130
    except (ConfigError, CandorError) as exc:
        message = exc.user_message if isinstance(exc, CandorError) else str(exc)
        return _fail(args, message, 1)
    except Exception as exc:
        # The knowledge package's own errors are written as one sentence for people.
        from knowledge import EmbedderMismatch, ScopeError, StoreError, UnsupportedFile

        if isinstance(exc, EmbedderMismatch | ScopeError | StoreError | UnsupportedFile):
            return _fail(args, str(exc), 1)
        log.debug("failed", exc_info=True)
        return _fail(
            args,
            f"{args.command} failed unexpectedly; rerun with CANDOR_LOG_LEVEL=DEBUG for details.",
            1,
        )


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    """Report `message` (one sentence) the way the caller asked: JSON or plain text."""
    if getattr(args, "json", False):
        print(json.dumps({"error": message}, ensure_ascii=False))
    else:
        print(f"candor: {message}", file=sys.stderr)
    return code


class _OneLineFormatter(logging.Formatter):
    """Log lines without tracebacks: the terminal gets sentences; DEBUG gets the rest."""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None
        saved, record.exc_info = record.exc_info, None
        try:
            return super().format(record).rstrip()
        finally:
            record.exc_info = saved


def _configure_logging(args: argparse.Namespace, settings: Settings) -> None:
    level = settings.candor.log_level
    terminal = args.command in (
        "chat",
        "kb",
        "usage",
        "manifest",
        "db",
        "prices",
        "eval",
        "jobs",
        "tools",
    )
    if terminal and "CANDOR_LOG_LEVEL" not in os.environ:
        level = "WARNING"  # keep the terminal for the answer; opt in to more with the variable
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler: logging.Handler = logging.StreamHandler()
    # A command run in a terminal shows sentences; `serve` keeps tracebacks for operators.
    quiet = terminal and level != "DEBUG"
    handler.setFormatter(_OneLineFormatter(fmt) if quiet else logging.Formatter(fmt))
    if settings.candor.log_format == "json":
        from bot.observability.logs import json_handler

        handler = json_handler(settings)  # one JSON object per line, secrets redacted
    logging.basicConfig(level=level, handlers=[handler])
    for noisy in ("alembic", "httpx", "httpx2", "openai._base_client"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def _commands() -> dict[str, Command]:
    from bot.cli.eval import run_eval
    from bot.cli.jobs import run_jobs
    from bot.cli.kb import run_kb
    from bot.cli.prices import run_prices
    from bot.cli.tools import run_tools
    from bot.cli.usage import run_usage

    return {
        "chat": _chat,
        "serve": _serve,
        "db": _db,
        "manifest": _manifest,
        "local-llm": _local_llm,
        "kb": run_kb,
        "usage": run_usage,
        "prices": run_prices,
        "tools": run_tools,
        "eval": run_eval,
        "jobs": run_jobs,
        "export": _export,
    }


async def _chat(args: argparse.Namespace, settings: Settings) -> int:
    from bot.conversation import Turn
    from bot.deps import build_deps

    if not settings.openai.base_url:
        settings.require("OPENAI_API_KEY")
    deps = await build_deps(settings)
    thread = f"cli-{uuid.uuid4().hex[:12]}"
    try:
        if args.once is not None:
            turn = Turn(
                workspace_id=args.workspace,
                channel_id=args.channel,
                thread_ts=thread,
                user_id=args.user,
                text=args.once,
                event_id=f"cli-{uuid.uuid4().hex}",
            )
            if args.json:
                answer = await deps.manager.reply(turn)
                print(json.dumps(answer.as_dict(), ensure_ascii=False))
            else:
                answer = await deps.manager.reply(turn, _print_delta)
                _print_footer(answer)
            return 0
        print(f"Candor chat as {args.user} in {args.channel}. Ctrl-D to quit.", file=sys.stderr)
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                print(file=sys.stderr)
                return 0
            if not line.strip():
                continue
            turn = Turn(
                workspace_id=args.workspace,
                channel_id=args.channel,
                thread_ts=thread,
                user_id=args.user,
                text=line,
                event_id=f"cli-{uuid.uuid4().hex}",
            )
            try:
                sys.stdout.write("candor> ")
                answer = await deps.manager.reply(turn, _print_delta)
                _print_footer(answer)
            except CandorError as exc:
                print(f"\n{exc.user_message}", file=sys.stderr)
    finally:
        await deps.close()


async def _print_delta(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _print_footer(answer: Any) -> None:
    sys.stdout.write("\n")
    for citation in answer.citations:
        print(f"  [{citation.index}] {citation.title} — {citation.link}")
    for notice in answer.notices:
        print(f"  note: {notice}")
    if answer.tool_calls:
        print("  tools used: " + ", ".join(dict.fromkeys(c["tool"] for c in answer.tool_calls)))
    usage = answer.usage
    estimated = " (estimated)" if usage.estimated else ""
    seconds = answer.timings.get("total_ms", 0.0) / 1000
    print(
        f"[{answer.model} · {usage.prompt_tokens} prompt + {usage.completion_tokens} "
        f"completion tokens{estimated} · {seconds:.1f} s]",
        file=sys.stderr,
    )


async def _export(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.export import run_export

    return await run_export(args, settings)


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.serve import serve

    await serve(
        settings,
        http=args.http,
        port=args.port,
        workers=args.workers,
        worker=args.worker,
        env_file=args.env_file,
    )
    return 0


async def _db(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db.engine import (
        current_revision,
        database_error,
        describe_url,
        head_revision,
        upgrade,
    )
    from bot.deps import open_checked_database

    db = open_checked_database(settings)
    head = head_revision()
    waited = 0.0
    try:
        while True:
            try:
                if args.db_command == "upgrade":
                    await upgrade(db)
                revision = await current_revision(db)
            except Exception as exc:
                if args.db_command != "check" or waited >= args.wait:
                    where = describe_url(settings.database_url)
                    raise database_error(exc, where, sqlite=db.is_sqlite) from None
                revision = None
            if args.db_command != "check" or revision == head or waited >= args.wait:
                break
            await asyncio.sleep(2)  # an init container waiting for the migration Job
            waited += 2
    finally:
        await db.dispose()
    print(f"database at revision {revision}")
    if args.db_command == "check" and revision != head:
        print(f"candor: the database is not migrated to {head}; run `candor db upgrade`.")
        return 1
    return 0


async def _manifest(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.manifest import render_manifest

    if args.http and not args.url:
        raise ConfigError("candor manifest --http needs --url, the public base URL of the bot.")
    print(render_manifest(http=args.http, url=args.url))
    return 0


async def _local_llm(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.local_llm import run_local_llm

    return await run_local_llm(host=args.host, port=args.port)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
