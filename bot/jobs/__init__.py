"""Scheduled work: plain coroutines taking `Deps` (and its injected clock), run once across
replicas by the replica holding a database lease.

- `job`       what a job is (name, coroutine, cron, one line on what it does).
- `registry`  the jobs Candor schedules, each with its `CANDOR_JOBS_*_CRON` setting.
- `runner`    `JobRunner`: lease, due slots, recorded runs; `build_scheduler` (the APScheduler
              tick in `candor serve`).
- `lease`     the `scheduler_leases` row: take, renew, release, show.
- `scheduler` the original jobs (stale claims, stale holds, retention).
- `digests`   the daily usage digest and late budget alerts.

May import: the conversation core at `bot/`, `bot.db`, `bot.spend`. Never `handlers`
(anything a job must post to Slack is handed in through `deps.extras`).
"""
