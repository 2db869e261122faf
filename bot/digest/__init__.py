"""What people use every day, without Slack: summaries, translations, catch-ups.

- `posts`: a Slack message as the model sees it (`Post`: author, time, text, link), the
  messages as numbered reference data (`as_material`), and `parse_since` for catch-up
  (`2h`, `3d`, `yesterday`, an ISO date; the last 24 hours by default).
- `tasks`: the instruction of each task (summarize a thread, translate a message, talk
  about a message, catch up on a channel) and the language a translation goes into.
- `run`: `digest`, which hands the posts to `ConversationManager.reply` as a task's
  material (`Turn.task` / `Turn.material`: the channel's settings, budget, ledger and
  confidence flag apply as to any answer) and, when they do not fit the model's context
  window, summarizes them in parts and then merges the parts (map-reduce), each part
  billed through the ledger.
- `recent`: the user's recent threads with Candor, for the Home tab.

Imports: `bot` (conversation, tokens, ports, db) and the standard library; no Slack.
"""

from bot.digest.posts import InvalidSince, Post, as_material, parse_since
from bot.digest.run import digest

__all__ = ["InvalidSince", "Post", "as_material", "digest", "parse_since"]
