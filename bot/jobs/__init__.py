"""Scheduled work: plain coroutines taking `Deps` (and its injected clock), run once across
replicas by the replica holding a database lease.

- `job`       what a job is (name, coroutine, cron, one line on what it does).
- `registry`  the jobs Candor schedules, each with its `CANDOR_JOBS_*_CRON` setting.
- `runner`    `JobRunner`: lease, due slots, recorded runs; `build_scheduler` (the APScheduler
              tick in `candor serve`).
- `lease`     the `scheduler_leases` row: take, renew, release, show.
- `scheduler` the original jobs (stale claims, stale holds, retention).
- `digests`   the daily usage digest and late budget alerts.
- `sync`      re-sync of knowledge sources registered with `--sync` (and their registry).
- `review_jobs` the weekly review digest and the Ask-a-human reminder.

May import: the conversation core at `bot/`, `bot.db`, `bot.spend`, `bot.review`,
`knowledge`. Never `handlers` (anything a job must post to or read from Slack is handed in
through `deps.extras`: `ADMIN_POSTER`, `THREAD_NOTICE`, `SLACK_CLIENT`).
"""
