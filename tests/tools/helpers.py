"""Helpers for the tool tests: allowing tools the way an admin does."""

from __future__ import annotations

from bot.deps import Deps
from bot.tools import policy


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
