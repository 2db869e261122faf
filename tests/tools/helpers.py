"""Helpers for the tool tests: allowing tools the way an admin does."""

from __future__ import annotations

from pathlib import Path

from bot.deps import Deps
from bot.tools import policy
from bot.tools.mcp import load_config
from bot.tools.registry import Toolbox


async def allow(
    deps: Deps,
    name: str = "builtin",
    *,
    channel: str = "*",
    workspace: str = "T1",
    read_only: bool | None = None,
) -> None:
    """Allow `name` (`server[/tool]`) in `channel` (`*`: the workspace), audited."""
    server, tool = policy.parse_name(name)
    async with deps.db.write() as session:
        await policy.set_rule(
            session,
            workspace_id=workspace,
            channel_id=channel,
            server=server,
            tool=tool,
            allowed=True,
            actor_id="UADMIN",
            now=deps.clock.now(),
            action="tools allow",
        )
        if read_only is not None:
            await policy.set_rule(
                session,
                workspace_id=workspace,
                channel_id="*",
                server=server,
                tool=tool,
                read_only=read_only,
                actor_id="UADMIN",
                now=deps.clock.now(),
                action="tools readonly",
            )


def use_servers(deps: Deps, config: Path) -> Toolbox:
    """Give the conversation manager a toolbox with the MCP servers of `config`."""
    box = Toolbox(
        settings=deps.settings,
        db=deps.db,
        clock=deps.clock,
        knowledge=deps.knowledge,
        servers=load_config(config),
    )
    deps.manager.tools = box
    return box
