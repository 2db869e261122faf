"""Candor's core, importable without Slack.

At this level lives the conversation core: `settings` (pydantic-settings), `deps` (the
dependency container), `conversation` (the conversation manager), `llm` (the gateway),
`tokens` (counting and context windows), `channels` (effective channel settings), `kb`
(scoped retrieval over `knowledge/`), `ports` (the interfaces the core calls), `errors`
and `clock`. Each other concern is a package: `db` (models, repositories, migrations),
`spend` (guard, ledger, prices, budgets, reports), `admin` (rights, settings changes,
audit), `jobs` (scheduled work) and `cli` (the `candor` command, the composition root).

May import: `knowledge`. Never `handlers`, except `bot.cli` (to start the Slack app).
Nothing here imports `slack_bolt` or `slack_sdk`.
"""

__version__ = "0.1.0"
