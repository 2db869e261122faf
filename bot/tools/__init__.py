"""Tools the model may call while it answers: the bounded loop, built-ins, MCP servers.

What lives here (no Slack imports; the Slack surface plugs in through the protocols of
`bot.tools.base`, implemented in `handlers/tools.py`):

- `base`: what a tool is (`ToolSpec`), what one call sees (`ToolContext`) and returns
  (`ToolOutput`), and the ports to the surface: `SlackReader` (thread, user and channel
  look-ups), `ApprovalGate` (a person approves a call with side effects), `StatusSink`
  (what Candor is doing right now).
- `builtins`: `search_knowledge`, `read_thread`, `lookup_user`, `lookup_channel`,
  `current_time`; read-only by declaration.
- `mcp`: MCP servers from `CANDOR_MCP_CONFIG` (stdio and streamable HTTP, with the SSRF
  guard), through the official `mcp` SDK.
- `policy`: who may use which tool where (`tool_permissions`), which tools an admin
  marked read-only, and the audited changes to both.
- `registry`: the `Toolbox` that puts the above together for one turn.
- `loop`: the bounded loop (steps, wall-clock deadline, budget through the caller).

Imports: `bot.llm`, `bot.ports`, `bot.settings`, `bot.clock`, `bot.db`, `bot.admin.audit`
and `bot.errors`; never `bot.conversation` (which imports this package) nor `handlers/`.
"""
