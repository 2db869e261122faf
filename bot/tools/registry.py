"""The `Toolbox`: which tools one turn may use, and running them.

`Toolbox.open(ctx)` reads the channel's rules, connects the MCP servers that have an allowed
tool there, and returns `TurnTools` (or None when no tool is allowed, so the conversation
takes its plain path). `TurnTools.run(call)` checks the call is one it offered, asks for
approval when the tool is not read-only, runs it within its timeout and turns every
failure into a tool result the model sees; it never raises for a tool's fault.

The surface attaches its `SlackReader`, `ApprovalGate` and status sink with `attach`;
without them (the CLI) the Slack built-ins answer that Slack is not connected and calls
that need approval are refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bot import channels
from bot.clock import Clock
from bot.db.engine import Database
from bot.llm import ToolCallRequest
from bot.ports import KnowledgeSource, RetrievedHit
from bot.settings import Settings
from bot.tools import builtins, policy
from bot.tools.approvals import Approvals
from bot.tools.base import (
    BUILTIN,
    ApprovalGate,
    PendingCall,
    SlackReader,
    StatusSink,
    ToolContext,
    ToolOutput,
    ToolSpec,
)
from bot.tools.builtins import BuiltinEnv
from bot.tools.images import ImageStudio
from bot.tools.mcp import McpConnections, McpServerConfig, load_config

log = logging.getLogger(__name__)

DENIED = (
    "The person asked did not approve this call (denied, or no answer in time); "
    "do not call it again in this answer."
)
NO_APPROVER = "This call needs a person's approval, and there is no one to ask here."


@dataclass(frozen=True)
class CatalogueEntry:
    """One tool as `candor tools list` shows it."""

    spec: ToolSpec
    allowed_in: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "tool": self.spec.label,
            "source": "built-in"
            if self.spec.server == BUILTIN
            else f"MCP server {self.spec.server}",
            "read_only": self.spec.read_only,
            "reads": self.spec.reads,
            "allowed_in": list(self.allowed_in),
        }


@dataclass
class CallRecord:
    """A tool call made during an answer (for the footer and `candor chat --json`)."""

    name: str
    label: str
    arguments: dict[str, Any]
    ok: bool
    approved: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tool": self.label,
            "arguments": self.arguments,
            "ok": self.ok,
            "approved": self.approved,
        }


class Toolbox:
    """Every tool Candor knows, and the rules for using them; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        clock: Clock,
        knowledge: KnowledgeSource | None = None,
        servers: Mapping[str, McpServerConfig] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.knowledge = knowledge
        self.servers: dict[str, McpServerConfig] = (
            dict(servers) if servers is not None else load_config(settings.candor.mcp_config)
        )
        self.approvals = Approvals(db, clock)
        self.reader: SlackReader | None = None
        self.gate: ApprovalGate | None = None
        self.status: StatusSink | None = None
        self.images: ImageStudio | None = None

    def attach(
        self,
        *,
        reader: SlackReader | None = None,
        gate: ApprovalGate | None = None,
        status: StatusSink | None = None,
        images: ImageStudio | None = None,
    ) -> None:
        """The surface's look-ups, approval buttons, status line and image generation."""
        self.reader = reader or self.reader
        self.gate = gate or self.gate
        self.status = status or self.status
        self.images = images or self.images

    async def rules(self, workspace_id: str) -> list[policy.Rule]:
        async with self.db.sessions() as session:
            return await policy.load_rules(session, workspace_id)

    async def open(self, ctx: ToolContext, *, first_index: int = 1) -> TurnTools | None:
        """The tools `ctx`'s channel may use, connected; None when there are none."""
        rules = await self.rules(ctx.workspace_id)
        where = {"workspace_id": ctx.workspace_id, "channel_id": ctx.channel_id}
        specs = [
            spec
            for spec in builtins.SPECS.values()
            if policy.is_allowed(rules, server=BUILTIN, tool=spec.tool, **where)
        ]
        if any(spec.name == builtins.GENERATE_IMAGE for spec in specs):
            # Image generation only where an admin set an image model, and a surface can show it.
            ctx = replace(ctx, image_model=await self._image_model(ctx))
            if not (ctx.image_model and self.images):
                specs = [spec for spec in specs if spec.name != builtins.GENERATE_IMAGE]
        wanted = policy.any_server_rule(rules, **where) & set(self.servers)
        connections = McpConnections(
            {name: self.servers[name] for name in wanted},
            allow_private_network=self.settings.candor.mcp_allow_private_network,
        )
        for server in sorted(wanted):
            for spec in await connections.list_tools(server):
                if policy.is_allowed(rules, server=server, tool=spec.tool, **where):
                    read_only = policy.is_read_only(
                        rules, workspace_id=ctx.workspace_id, server=server, tool=spec.tool
                    )
                    specs.append(replace(spec, read_only=read_only))
        if not specs:
            await connections.close()
            return None
        return TurnTools(self, ctx, specs, connections, first_index=first_index)

    async def _image_model(self, ctx: ToolContext) -> str | None:
        """The channel's `image_model` (None: off), read only when the tool is allowed."""
        async with self.db.sessions() as session:
            eff = await channels.load_effective(
                session, self.settings, workspace_id=ctx.workspace_id, channel_id=ctx.channel_id
            )
        return eff.image_model

    def check_name(self, raw: str) -> tuple[str, str]:
        """`SERVER[/TOOL]` -> (server, tool), refusing servers and built-ins that do not exist."""
        server, tool = policy.parse_name(raw)
        if server == BUILTIN:
            if tool != policy.ANY and tool not in builtins.SPECS:
                names = ", ".join(builtins.SPECS)
                raise policy.InvalidTool(f"There is no built-in `{tool}`; built-ins: {names}.")
        elif server not in self.servers:
            known = ", ".join(sorted(self.servers)) or "none (set CANDOR_MCP_CONFIG)"
            raise policy.InvalidTool(
                f"There is no MCP server `{server}`; configured: {known}. Built-ins are `builtin`."
            )
        return server, tool

    async def set_access(
        self, *, workspace_id: str, channel_id: str, name: str, allowed: bool, actor_id: str
    ) -> bool:
        """Allow or deny `name` in a channel (`*`: the workspace), audited; False if unchanged."""
        server, tool = self.check_name(name)
        async with self.db.write() as session:
            return await policy.set_rule(
                session,
                workspace_id=workspace_id,
                channel_id=channel_id,
                server=server,
                tool=tool,
                allowed=allowed,
                actor_id=actor_id,
                now=self.clock.now(),
                action="tools allow" if allowed else "tools deny",
            )

    async def set_read_only(
        self, *, workspace_id: str, name: str, read_only: bool, actor_id: str
    ) -> bool:
        """Mark an MCP tool (or server) read-only, or not, workspace-wide; audited."""
        server, tool = self.check_name(name)
        if server == BUILTIN:
            raise policy.InvalidTool("Built-ins are read-only already.")
        async with self.db.write() as session:
            return await policy.set_rule(
                session,
                workspace_id=workspace_id,
                channel_id=policy.ANY,
                server=server,
                tool=tool,
                read_only=read_only,
                actor_id=actor_id,
                now=self.clock.now(),
                action="tools readonly",
            )

    async def catalogue(self, workspace_id: str = policy.ANY) -> list[CatalogueEntry]:
        """Every tool (built-in, and of every configured MCP server) and where it is allowed."""
        rules = await self.rules(workspace_id)
        entries: list[CatalogueEntry] = []
        specs = list(builtins.SPECS.values())
        async with McpConnections(
            self.servers, allow_private_network=self.settings.candor.mcp_allow_private_network
        ) as connections:
            for server in sorted(self.servers):
                for spec in await connections.list_tools(server):
                    read_only = policy.is_read_only(
                        rules, workspace_id=workspace_id, server=server, tool=spec.tool
                    )
                    specs.append(replace(spec, read_only=read_only))
        for spec in specs:
            allowed = policy.allowed_where(rules, server=spec.server, tool=spec.tool)
            entries.append(CatalogueEntry(spec, allowed))
        return entries


@dataclass
class TurnTools:
    """The tools of one turn, with its MCP connections; close it when the answer is done."""

    box: Toolbox
    ctx: ToolContext
    specs: list[ToolSpec]
    connections: McpConnections
    first_index: int = 1
    hits: list[RetrievedHit] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    _numbers: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name = {spec.name: spec for spec in self.specs}

    async def __aenter__(self) -> TurnTools:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.connections.close()

    def as_openai(self) -> list[dict[str, Any]]:
        return [spec.as_openai() for spec in self.specs]

    def number(self, hit: RetrievedHit) -> RetrievedHit:
        """Source numbers after the turn's own; a chunk found twice keeps its number."""
        key = (hit.source, hit.link, hit.text)
        if key in self._numbers:
            return replace(hit, index=self._numbers[key])
        index = self.first_index + len(self._numbers)
        self._numbers[key] = index
        numbered = replace(hit, index=index)
        self.hits.append(numbered)
        return numbered

    def seen(self, hits: list[RetrievedHit]) -> None:
        """The turn's own sources: a tool finding them again cites the same number."""
        for hit in hits:
            self._numbers.setdefault((hit.source, hit.link, hit.text), hit.index)
        self.first_index = max([self.first_index, *(h.index + 1 for h in hits)])

    async def run(self, call: ToolCallRequest, *, limit_seconds: float) -> ToolOutput:
        """Run one call; every failure is a result the model sees, never an exception."""
        spec = self._by_name.get(call.name)
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            arguments = None
        if spec is None:
            output = ToolOutput(f"There is no tool `{call.name}` here.", error=True)
            self.calls.append(CallRecord(call.name, call.name, {}, ok=False))
            return output
        if not isinstance(arguments, dict):
            self.calls.append(CallRecord(spec.name, spec.label, {}, ok=False))
            return ToolOutput("The arguments must be a JSON object.", error=True)
        record = CallRecord(spec.name, spec.label, arguments, ok=False)
        self.calls.append(record)
        if not spec.read_only:
            gate = self.box.gate
            if gate is None:
                return ToolOutput(NO_APPROVER, error=True)
            approved = await gate.ask(
                self.ctx,
                PendingCall(spec, arguments),
                self.box.settings.candor.tool_approval_timeout_seconds,
            )
            record.approved = approved
            if not approved:
                return ToolOutput(DENIED, error=True)
        await self._status(
            builtins.describe(spec.name, arguments)
            if spec.server == BUILTIN
            else f"running {spec.label}"
        )
        try:
            async with asyncio.timeout(limit_seconds):
                output = await self._dispatch(spec, arguments, limit_seconds)
        except TimeoutError:
            output = ToolOutput(
                f"The tool did not finish within {limit_seconds:g} seconds.", error=True
            )
        except Exception as exc:
            # The model sees that the tool failed (never the exception's text: it may
            # carry a secret); the log has the details.
            log.warning("Tool %s failed: %s", spec.label, type(exc).__name__, exc_info=True)
            output = ToolOutput(f"The tool failed ({type(exc).__name__}).", error=True)
        record.ok = not output.error
        return output

    async def _dispatch(
        self, spec: ToolSpec, arguments: dict[str, Any], limit_seconds: float
    ) -> ToolOutput:
        if spec.server == BUILTIN:
            env = BuiltinEnv(
                clock=self.box.clock,
                knowledge=self.box.knowledge,
                reader=self.box.reader,
                number=self.number,
                images=self.box.images,
            )
            return await builtins.RUNNERS[spec.tool](self.ctx, arguments, env)
        return await self.connections.call(spec.server, spec.tool, arguments, limit_seconds)

    async def _status(self, text: str) -> None:
        if self.box.status is None:
            return
        try:
            await self.box.status(self.ctx, text)
        except Exception:
            log.info("Could not show the tool status", exc_info=True)
