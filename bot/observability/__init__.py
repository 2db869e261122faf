"""Observability: Prometheus metrics, JSON logs, readiness.

- `metrics`  `Metrics`, one Prometheus registry per process (built by the composition root,
             kept in `deps.extras[METRICS]`), with small methods the code paths call
             (`event_received`, `answer_done`, `llm_usage`, `job_run`, ...).
- `logs`     `CANDOR_LOG_FORMAT=json`: one JSON object per line with the event, channel,
             user and answer ids of the message being handled; secrets are redacted and
             message text is left out unless `CANDOR_LOG_CONTENT=1`.
- `health`   `readiness(deps)`: database reachable and migrated, knowledge store reachable.

May import: the conversation core at `bot/` (settings, deps, errors), `bot.db`. Never
`handlers`, `bot.cli` or Slack.
"""
