"""Admin: who is an admin, changing settings, spend settings, and the audit log.

- `service`  `AdminService`: admin rights (members of the installing team only) and the
             operations the `/candor` command and App Home call.
- `settings` parsing and validating setting values, applying a change to a channel row.
- `spend`    budgets, price overrides and usage reports, as admin operations.
- `audit`    one row per change: who, what, before, after, when.

May import: the conversation core at `bot/` (settings, channels, llm, deps, errors),
`bot.db`, `bot.spend`. Never `handlers` or `bot.cli`; nothing here imports Slack.
"""
