"""MCP servers: the configuration file, the SSRF guard, and calling tools with the SDK.

`CANDOR_MCP_CONFIG` names a JSON file in the form most MCP clients read:

    {"mcpServers": {
        "notes": {"command": "python", "args": ["notes_server.py"], "env": {"KEY": "v"}},
        "wiki":  {"url": "https://mcp.example.com/mcp", "bearer_token_env": "WIKI_TOKEN"}
    }}

A `command` server runs as a child process spoken to over stdio; a `url` server over
streamable HTTP, with `Authorization: Bearer $VAR` when `bearer_token_env` names a
variable (the token itself never sits in the file, a log or an error). A URL whose host is
a private, loopback, link-local or otherwise internal address is refused (server-side
request forgery) unless `"allow_private_network": true` is set for that server or
`CANDOR_MCP_ALLOW_PRIVATE_NETWORK=true` for all.

Server names become the prefix of the tool names the model sees (`notes__add_note`),
so they are limited to letters, digits, `-` and `_` (no `__`). What a server says about
its own tools (annotations such as `readOnlyHint`) is not trusted: only an admin marks a
tool read-only (`bot.tools.policy`).

A server is connected for one turn at a time (`McpConnections`), only when the channel
allows one of its tools, and closed when the answer is done.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.errors import CandorError
from bot.tools.base import MAX_RESULT_CHARS, SEPARATOR, ToolOutput, ToolSpec

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: OpenAI's limit on a function name.
MAX_FUNCTION_NAME = 64
#: Seconds to start a server and list its tools.
CONNECT_TIMEOUT = 20.0


class McpConfigError(CandorError):
    """`CANDOR_MCP_CONFIG` cannot be used; the message names what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_message=message)


class McpRefused(CandorError):
    """A server Candor will not connect to (the SSRF guard)."""


@dataclass(frozen=True)
class McpServerConfig:
    """One server of the configuration file."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    bearer_token_env: str = ""
    allow_private_network: bool = False

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"


def load_config(path: str | Path | None) -> dict[str, McpServerConfig]:
    """The servers of the file at `path` (none when `path` is empty)."""
    if not path:
        return {}
    where = f"CANDOR_MCP_CONFIG ({path})"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise McpConfigError(f"{where} does not exist; fix the path or unset it.") from None
    except (OSError, UnicodeDecodeError):
        raise McpConfigError(f"{where} cannot be read.") from None
    except json.JSONDecodeError as exc:
        raise McpConfigError(f"{where} is not valid JSON (line {exc.lineno}).") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError(f'{where} needs an object {{"mcpServers": {{"name": {{...}}}}}}.')
    configs: dict[str, McpServerConfig] = {}
    for name, raw in servers.items():
        configs[name] = _server(where, str(name), raw)
    return configs


def _server(where: str, name: str, raw: Any) -> McpServerConfig:
    if not _NAME.match(name) or SEPARATOR in name:
        raise McpConfigError(
            f"{where}: the server name `{name[:40]}` may only hold letters, digits, `-` and "
            "single `_` (at most 32 characters)."
        )
    if not isinstance(raw, dict):
        raise McpConfigError(f"{where}: server `{name}` must be an object.")
    command, url = raw.get("command"), raw.get("url")
    if bool(command) == bool(url):
        raise McpConfigError(f"{where}: server `{name}` needs either `command` or `url`.")
    args = raw.get("args") or []
    env = raw.get("env") or {}
    if not isinstance(args, list) or not isinstance(env, dict):
        raise McpConfigError(
            f"{where}: server `{name}` needs `args` as a list and `env` as an object."
        )
    if url:
        scheme = urlsplit(str(url)).scheme.lower()
        if scheme not in ("http", "https"):
            raise McpConfigError(f"{where}: server `{name}` needs an http(s) `url`.")
    return McpServerConfig(
        name=name,
        command=str(command or ""),
        args=tuple(str(a) for a in args),
        env={str(k): str(v) for k, v in env.items()},
        url=str(url or ""),
        bearer_token_env=str(raw.get("bearer_token_env") or ""),
        allow_private_network=bool(raw.get("allow_private_network", False)),
    )


# --- the SSRF guard ------------------------------------------------------------------------


def is_internal(address: str) -> bool:
    """Whether an IP address is not on the public internet."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def check_url(config: McpServerConfig, *, allow_private_network: bool) -> None:
    """Refuse a server whose host resolves to an internal address, unless allowed."""
    if allow_private_network or config.allow_private_network:
        return
    host = urlsplit(config.url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        raise McpRefused(f"MCP server {config.name}: cannot resolve its host") from None
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or any(is_internal(a) for a in addresses):
        raise McpRefused(
            f"MCP server {config.name} is on a private or loopback address; set "
            "allow_private_network for it (or CANDOR_MCP_ALLOW_PRIVATE_NETWORK) to allow it"
        )


# --- connecting and calling ------------------------------------------------------------


def exposed_name(server: str, tool: str) -> str | None:
    """`server__tool`, or None when that is not a valid OpenAI function name."""
    name = f"{server}{SEPARATOR}{tool}"
    if not _TOOL_NAME.match(tool) or len(name) > MAX_FUNCTION_NAME:
        return None
    return name


class McpConnections:
    """The MCP servers of one turn: connected on first use, closed together."""

    def __init__(
        self, configs: dict[str, McpServerConfig], *, allow_private_network: bool = False
    ) -> None:
        self.configs = configs
        self.allow_private_network = allow_private_network
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        #: Why a server could not be used, one sentence per server (no secrets in it).
        self.failed: dict[str, str] = {}
        self._refused: dict[str, int] = {}

    async def __aenter__(self) -> McpConnections:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            await self._stack.aclose()
        except Exception:
            log.warning("Closing MCP servers failed", exc_info=True)
        self._clients.clear()

    async def _client(self, server: str) -> Any:
        if server in self._clients:
            return self._clients[server]
        config = self.configs[server]
        from mcp import Client, StdioServerParameters

        client: Any
        if config.url:
            await check_url(config, allow_private_network=self.allow_private_network)
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            headers = {}
            if config.bearer_token_env:
                token = os.environ.get(config.bearer_token_env, "")
                if not token:
                    raise McpRefused(f"MCP server {server}: {config.bearer_token_env} is not set")
                headers["Authorization"] = f"Bearer {token}"

            async def note_refusal(response: Any) -> None:
                # The SDK reports any non-2xx as "an error response"; keep 401/403 so the
                # admin is told it is the credentials (never the token itself).
                if response.status_code in (401, 403):
                    self._refused[server] = response.status_code

            http = httpx2.AsyncClient(
                headers=headers, timeout=30.0, event_hooks={"response": [note_refusal]}
            )
            self._stack.push_async_callback(http.aclose)
            client = Client(streamable_http_client(config.url, http_client=http), mode="legacy")
        else:
            params = StdioServerParameters(
                command=config.command, args=list(config.args), env=dict(config.env) or None
            )
            client = Client(params, mode="legacy")
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await self._stack.enter_async_context(client)
        self._clients[server] = client
        return client

    def _why(self, server: str, exc: Exception) -> str:
        """One sentence saying why `server` failed; never the exception's text, which may
        hold a URL with credentials or what the server sent back."""
        if isinstance(exc, McpRefused):
            return str(exc)
        config = self.configs[server]
        status = self._refused.get(server)
        if status is not None:
            fix = (
                f"check the token in {config.bearer_token_env}"
                if config.bearer_token_env
                else "it needs a bearer token (set bearer_token_env for it)"
            )
            return f"MCP server {server} refused Candor's credentials (HTTP {status}); {fix}."
        if isinstance(exc, TimeoutError):
            return f"MCP server {server} did not answer within {CONNECT_TIMEOUT:g} seconds."
        return (
            f"MCP server {server} could not be reached or failed to start ({type(exc).__name__})."
        )

    async def list_tools(self, server: str) -> list[ToolSpec]:
        """The server's tools as specs (not read-only: the policy decides that)."""
        try:
            client = await self._client(server)
            async with asyncio.timeout(CONNECT_TIMEOUT):
                listed = await client.list_tools()
        except Exception as exc:
            why = self._why(server, exc)
            log.warning("MCP server %s is unavailable: %s", server, why)
            self.failed[server] = why
            return []
        specs: list[ToolSpec] = []
        for tool in listed.tools:
            name = exposed_name(server, tool.name)
            if name is None:
                log.info("Skipping MCP tool %s/%s: its name is not usable.", server, tool.name)
                continue
            specs.append(
                ToolSpec(
                    name=name,
                    description=tool.description or tool.name,
                    parameters=dict(tool.input_schema or {"type": "object", "properties": {}}),
                    server=server,
                    tool=tool.name,
                    read_only=False,
                    reads=f"MCP server {server}",
                )
            )
        return specs

    async def call(
        self, server: str, tool: str, arguments: dict[str, Any], limit_seconds: float
    ) -> ToolOutput:
        client = await self._client(server)
        result = await client.call_tool(tool, arguments, read_timeout_seconds=limit_seconds)
        texts: list[str] = []
        for block in result.content or []:
            text = getattr(block, "text", None)
            texts.append(str(text) if text is not None else f"[{getattr(block, 'type', 'data')}]")
        if not texts and result.structured_content is not None:
            texts.append(json.dumps(result.structured_content, ensure_ascii=False))
        text = "\n".join(texts)[:MAX_RESULT_CHARS] or "(no output)"
        return ToolOutput(text, error=bool(result.is_error))
