"""Redaction before the LLM: secrets and (when enabled) personal data never reach the model.

What lives here:
- `detectors`: the built-in detectors (Slack tokens, provider API keys, private keys,
  passwords in URLs; emails, phone numbers, Luhn-checked card numbers, IBANs and
  national IDs checked with python-stdnum);
- `patterns`: admin-defined patterns, refused when they could backtrack badly;
- `redactor`: `Redactor` (one per turn) and `redactor_for(eff)`, plus
  `knowledge_redactor(settings)` for ingestion (`CANDOR_REDACT_KNOWLEDGE`).

Where it applies (`bot.conversation.ConversationManager.reply`): the question (before
retrieval, so the knowledge query is clean too), every message of the thread history,
every retrieved chunk (text and title), and tool results. The per-turn redactor is the
local `redactor` in `reply`; it hands `redactor.redact` to `_tool_loop` (`redact=`), which
passes every tool result through it before the next step goes to the model, so the one
notice counts those too. The user reads `redactor.notice()` among the answer's notices ("I withheld 2 items
(an API key, an email address) from the language model.").

What is stored: the user turn is stored *redacted* (the manager replaces the question
before anything else sees it), so `conversation_turns`, `answers` (model output and hit
titles) and the spend ledger (counts and money only) never hold a withheld value. The
admin audit log holds the patterns admins typed, never a matched value.

Knowledge ingestion (`bot.kb.build_knowledge_base`) hands `knowledge_redactor` to the
knowledge base as a plain callable; `knowledge/` never imports this package.

Imports: the standard library, `stdnum`, `bot.errors`, `bot.settings` and `bot.channels`
(for `EffectiveSettings`); never `handlers/`, the conversation manager or `bot.admin`.
"""

from __future__ import annotations

from bot.redaction.detectors import Detector
from bot.redaction.patterns import (
    MAX_PATTERNS,
    InvalidPattern,
    check_regex,
    parse_name,
)
from bot.redaction.redactor import (
    RedactionPolicy,
    Redactor,
    knowledge_redactor,
    redactor_for,
)

__all__ = [
    "MAX_PATTERNS",
    "Detector",
    "InvalidPattern",
    "RedactionPolicy",
    "Redactor",
    "check_regex",
    "knowledge_redactor",
    "parse_name",
    "redactor_for",
]
