"""`candor tools`: which tools exist and where they are allowed; the CLI's `/candor tools`.

    candor tools list [--json] [--team T]          name, source, read-only, allowed where
    candor tools allow|deny SERVER[/TOOL] (--channel C | --workspace) [--team T]
    candor tools readonly SERVER/TOOL [--off] [--team T]

`--team` names the Slack workspace (team ID) a rule is for; without it a rule applies in
every workspace (`*`). Changes are written to the audit log with the actor `cli`.
`candor chat` answers through the same tool loop, and `candor chat --once Q --json` lists
the tool calls it made under `tool_calls`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bot.settings import Settings

ACTOR = "cli"


def add_tools_parser(sub: Any) -> None:
    tools = sub.add_parser("tools", help="list tools, allow or deny them per channel")
    tools_sub = tools.add_subparsers(dest="tools_command", required=True)
    listing = tools_sub.add_parser("list", help="every tool and where it is allowed")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.add_argument("--team", default="*", help="workspace (team ID) whose rules to show")
    for verb in ("allow", "deny"):
        change = tools_sub.add_parser(verb, help=f"{verb} a server or tool (audited)")
        change.add_argument("name", metavar="SERVER[/TOOL]")
        where = change.add_mutually_exclusive_group(required=True)
        where.add_argument("--channel", help="channel ID")
        where.add_argument("--workspace", action="store_true", help="every channel")
        change.add_argument("--team", default="*", help="workspace (team ID); default: every")
    readonly = tools_sub.add_parser("readonly", help="mark an MCP tool read-only (audited)")
    readonly.add_argument("name", metavar="SERVER/TOOL")
    readonly.add_argument("--off", action="store_true", help="ask for approval again")
    readonly.add_argument("--team", default="*", help="workspace (team ID); default: every")


async def run_tools(args: argparse.Namespace, settings: Settings) -> int:
    from bot.deps import build_deps
    from bot.tools.policy import ANY

    deps = await build_deps(settings, with_knowledge=False)
    box = deps.manager.tools
    try:
        if args.tools_command == "list":
            entries = await box.catalogue(args.team)
            if args.json:
                print(json.dumps([e.as_dict() for e in entries], indent=2))
                return 0
            for entry in entries:
                row = entry.as_dict()
                kind = "read-only" if row["read_only"] else "asks approval"
                where = ", ".join(row["allowed_in"]) or "nowhere"
                print(f"{row['tool']:<32} {row['source']:<22} {kind:<14} allowed: {where}")
            return 0
        if args.tools_command == "readonly":
            changed = await box.set_read_only(
                workspace_id=args.team, name=args.name, read_only=not args.off, actor_id=ACTOR
            )
            state = "not read-only (asks for approval)" if args.off else "read-only"
            print(f"{args.name} is {state}." + ("" if changed else " (No change.)"))
            return 0
        channel = ANY if args.workspace else args.channel
        changed = await box.set_access(
            workspace_id=args.team,
            channel_id=channel,
            name=args.name,
            allowed=args.tools_command == "allow",
            actor_id=ACTOR,
        )
        verb = "allowed" if args.tools_command == "allow" else "denied"
        where = "every channel" if args.workspace else args.channel
        print(f"{args.name} is {verb} in {where}." + ("" if changed else " (No change.)"))
        return 0
    finally:
        await deps.close()
