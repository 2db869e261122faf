"""The review loop's core: review items, corrections, channel experts, the fine-tuning export.

What lives here (no Slack imports; the Slack surface is `handlers/review.py`):

- `items`: a review item per answer that people should look at (flagged by the confidence
  core, voted 👎, or passed on with **Ask a human**); marking it resolved; storing a
  reviewer's correction, and the Q&A `knowledge.Document` a correction becomes.
- `experts`: who **Ask a human** mentions in a channel (`/candor experts`), audited.
- `export`: the approved answers (👍 and corrections) as OpenAI chat fine-tuning examples.

Imports: `bot.db`, `bot.admin.audit`, `bot.channels`, `bot.conversation` (types and the
prompt's building blocks) and `knowledge`; never `handlers/`.
"""
