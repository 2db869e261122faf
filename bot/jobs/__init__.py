"""Scheduled work: plain coroutines taking `Deps` (and its injected clock), and the
APScheduler that runs them in `candor serve`.

May import: the conversation core at `bot/`, `bot.db`, `bot.spend`. Never `handlers`
(anything a job must post to Slack is handed in through `deps.extras`).
"""
