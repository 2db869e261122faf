"""Spend: what every LLM and embedding call costs, and who may still spend.

- `guard`   `SpendLedger`, the `bot.ports.SpendGuard` the conversation manager uses:
            reserve before a call, settle from the API's `usage` after it (idempotent per call).
- `ledger`  the statements behind reserve/settle (atomic counters, one row per call).
- `prices`  list prices (`genai-prices`), the local table (`prices.json`), admin overrides.
- `budgets` budget periods, limits and their reset times.
- `report`  spend tables and the chart for `/candor usage` and `candor usage`.

May import: `bot.db`, `bot.settings`, `bot.clock`, `bot.errors`, `bot.ports`, `bot.llm`
(for `Usage`). Never `handlers`, `bot.admin` or `bot.cli`.
"""
