"""Who may use which tool where, and which tools an admin marked read-only.

Rules live in `tool_permissions` (see `bot.db.models.ToolPermissionRow`). For a tool of a
server in a channel, the most specific rule wins: the channel's over the workspace's,
a rule for the tool over one for its whole server, the named workspace's over `*` (every
workspace, the CLI's default). Without any rule nothing is allowed, built-ins included:
every tool offered costs prompt tokens on every answer (about 400 for the five
built-ins), and a local model without tool support would be asked twice; so a channel
without rules keeps the plain, one-call path, and `/candor tools allow builtin
--workspace` turns all built-ins on in one command. MCP tools need an allow rule of their
own (a rule for `builtin` never reaches them).

Read-only is an admin's word (`/candor tools readonly SERVER/TOOL`), set workspace-wide;
an MCP server's own annotations are never trusted. A tool that is not read-only waits
for a person's approval before each call. Built-ins are read-only by declaration.

Every change writes an audit row in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.admin import audit
from bot.db.models import ToolPermissionRow
from bot.errors import CandorError
from bot.tools.base import BUILTIN, SEPARATOR

#: Every channel / every tool / every workspace.
ANY = "*"


class InvalidTool(CandorError):
    """An admin named a tool in a way Candor cannot read; the message says how."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_message=message)


@dataclass(frozen=True)
class Rule:
    workspace_id: str
    channel_id: str
    server: str
    tool: str
    allowed: bool | None
    read_only: bool | None


def parse_name(raw: str) -> tuple[str, str]:
    """`SERVER[/TOOL]` (or `server__tool`) -> (server, tool or `*`)."""
    text = raw.strip()
    if SEPARATOR in text and "/" not in text:
        server, _, tool = text.partition(SEPARATOR)
    else:
        server, _, tool = text.partition("/")
    low = server.strip().lower()
    server = BUILTIN if low in ("builtin", "built-in", "builtins") else server.strip()
    tool = tool.strip() or ANY
    if not server or len(server) > 64 or len(tool) > 128 or " " in server + tool:
        raise InvalidTool(
            f"`{raw}` is not a tool: name a server (`notes`), a tool of it (`notes/add_note`) "
            "or a built-in (`builtin/search_knowledge`)."
        )
    return server, tool


async def load_rules(session: AsyncSession, workspace_id: str) -> list[Rule]:
    """The rules of `workspace_id` and of every workspace (`*`)."""
    rows = await session.execute(
        select(ToolPermissionRow).where(
            or_(
                ToolPermissionRow.workspace_id == workspace_id,
                ToolPermissionRow.workspace_id == ANY,
            )
        )
    )
    return [
        Rule(r.workspace_id, r.channel_id, r.server, r.tool, r.allowed, r.read_only)
        for r in rows.scalars()
    ]


def _specificity(rule: Rule, workspace_id: str) -> tuple[int, int, int]:
    return (
        int(rule.channel_id != ANY),
        int(rule.tool != ANY),
        int(rule.workspace_id == workspace_id),
    )


def is_allowed(
    rules: Sequence[Rule], *, workspace_id: str, channel_id: str, server: str, tool: str
) -> bool:
    """Whether the tool may be offered in the channel (see the module docstring)."""
    matching = [
        r
        for r in rules
        if r.allowed is not None
        and r.server == server
        and r.tool in (tool, ANY)
        and r.channel_id in (channel_id, ANY)
        and r.workspace_id in (workspace_id, ANY)
    ]
    if not matching:
        return False
    best = max(matching, key=lambda r: _specificity(r, workspace_id))
    return bool(best.allowed)


def is_read_only(rules: Sequence[Rule], *, workspace_id: str, server: str, tool: str) -> bool:
    """Built-ins always; an MCP tool only when an admin marked it (or its server) so."""
    if server == BUILTIN:
        return True
    matching = [
        r
        for r in rules
        if r.read_only is not None
        and r.server == server
        and r.tool in (tool, ANY)
        and r.channel_id == ANY
        and r.workspace_id in (workspace_id, ANY)
    ]
    if not matching:
        return False
    return bool(max(matching, key=lambda r: _specificity(r, workspace_id)).read_only)


def any_server_rule(rules: Sequence[Rule], *, workspace_id: str, channel_id: str) -> set[str]:
    """MCP servers with an allow rule that could apply to the channel (worth connecting)."""
    return {
        r.server
        for r in rules
        if r.allowed
        and r.server != BUILTIN
        and r.channel_id in (channel_id, ANY)
        and r.workspace_id in (workspace_id, ANY)
    }


def allowed_where(rules: Sequence[Rule], *, server: str, tool: str) -> list[str]:
    """Where the tool is allowed, for listings: `workspace`, channel IDs (a deny at a more
    specific level is shown by its absence)."""
    places: list[str] = []
    for rule in sorted(rules, key=lambda r: (r.workspace_id, r.channel_id)):
        if rule.server != server or rule.tool not in (tool, ANY) or rule.allowed is None:
            continue
        where = "workspace" if rule.channel_id == ANY else rule.channel_id
        if rule.workspace_id != ANY and rule.channel_id == ANY:
            where = f"workspace {rule.workspace_id}"
        if not is_allowed(
            rules,
            workspace_id=rule.workspace_id,
            channel_id=rule.channel_id,
            server=server,
            tool=tool,
        ):
            continue
        if where not in places:
            places.append(where)
    return places


async def set_rule(
    session: AsyncSession,
    *,
    workspace_id: str,
    channel_id: str,
    server: str,
    tool: str,
    actor_id: str,
    now: datetime,
    allowed: bool | None = None,
    read_only: bool | None = None,
    action: str,
) -> bool:
    """Set `allowed` and/or `read_only` of one rule and write the audit row; False when
    nothing changed."""
    row = (
        await session.execute(
            select(ToolPermissionRow).where(
                ToolPermissionRow.workspace_id == workspace_id,
                ToolPermissionRow.channel_id == channel_id,
                ToolPermissionRow.server == server,
                ToolPermissionRow.tool == tool,
            )
        )
    ).scalar_one_or_none()
    if row is None:
        row = ToolPermissionRow(
            workspace_id=workspace_id,
            channel_id=channel_id,
            server=server,
            tool=tool,
            updated_at=now,
            updated_by=actor_id,
        )
        session.add(row)
    before = {"allowed": row.allowed, "read_only": row.read_only}
    if allowed is not None:
        row.allowed = allowed
    if read_only is not None:
        row.read_only = read_only
    after = {"allowed": row.allowed, "read_only": row.read_only}
    if before == after:
        return False
    row.updated_at = now
    row.updated_by = actor_id
    await session.flush()
    await audit.record(
        session,
        workspace_id=workspace_id,
        actor_id=actor_id,
        action=action,
        target=f"{server}/{tool}@{'workspace' if channel_id == ANY else channel_id}",
        before=before,
        after=after,
        when=now,
    )
    return True
