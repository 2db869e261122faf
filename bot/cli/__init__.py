"""The `candor` command and the composition root.

- `main`      argument parsing and the `candor` entry point (`chat`, `db`, `manifest`, ...).
- `kb`        `candor kb add|list|search|remove|reindex`, `kb_eval` for `candor kb eval`.
- `usage`     `candor usage`.
- `serve`     `candor serve`: builds `Deps` and starts the Slack app.
- `local_llm` `candor local-llm`: the bundled offline model.
- `manifest`  the Slack app manifest.

This is the only place in `bot/` that may import `handlers/` (to start the Slack app).
"""
