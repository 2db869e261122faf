"""Token counting is injected; this is the fallback estimate.

``knowledge/`` does not depend on the bot's tokenizer. Callers pass a
``count_tokens(text) -> int`` (for example a tiktoken encoder); without one we
use about four characters per token, which is close for English prose.
"""

from __future__ import annotations

from collections.abc import Callable

CountTokens = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """Rough token count: one token per four characters, at least one for non-empty text."""
    return (len(text) + 3) // 4
