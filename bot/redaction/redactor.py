"""`Redactor`: withholds secrets and personal data from text, and remembers what it withheld.

One `Redactor` is made per turn (`redactor_for`), from the channel's effective settings:
`redact_secrets` (default `CANDOR_REDACT_SECRETS`, on), `redact_pii` (default
`CANDOR_REDACT_PII`, off) and the admin's `redact_patterns`. Every text on its way to the
model goes through `redact`, and `notice()` then says, in one sentence, what was withheld
without repeating any of it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bot.redaction.detectors import PII_DETECTORS, SECRET_DETECTORS, Detector
from bot.redaction.patterns import admin_detectors

if TYPE_CHECKING:
    # Types only: bot.channels brings SQLAlchemy, which the knowledge base's redaction
    # (`candor kb add`/`search`) does not need.
    from bot.channels import EffectiveSettings
    from bot.ports import RetrievedHit
    from bot.settings import Settings


@dataclass(frozen=True)
class RedactionPolicy:
    """What to withhold: secrets, personal data, and the admin's own patterns."""

    secrets: bool = True
    pii: bool = False
    patterns: Mapping[str, str] | None = None

    def detectors(self) -> tuple[Detector, ...]:
        found: list[Detector] = []
        if self.secrets:
            found.extend(SECRET_DETECTORS)
        if self.pii:
            found.extend(PII_DETECTORS)
        found.extend(admin_detectors(self.patterns))
        return tuple(found)


class Redactor:
    """Replaces each withheld value with a typed placeholder (`[redacted API key]`)."""

    def __init__(self, policy: RedactionPolicy) -> None:
        self.policy = policy
        self._detectors = policy.detectors()
        #: How many values of each detector were withheld, in first-seen order.
        self.withheld: Counter[Detector] = Counter()

    @property
    def active(self) -> bool:
        return bool(self._detectors)

    def redact(self, text: str) -> str:
        """`text` with every value the policy withholds replaced by its placeholder."""
        if not text or not self._detectors:
            return text
        for detector in self._detectors:
            text = detector.pattern.sub(self._replacer(detector), text)
        return text

    def redact_hits(self, hits: Sequence[RetrievedHit]) -> list[RetrievedHit]:
        """Retrieved chunks with their text and title redacted (the link is kept)."""
        if not self._detectors:
            return list(hits)
        return [replace(h, text=self.redact(h.text), title=self.redact(h.title)) for h in hits]

    def _replacer(self, detector: Detector) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            value = match.group(detector.group)
            if detector.validate is not None and not detector.validate(value):
                return match.group(0)
            self.withheld[detector] += 1
            if detector.group == 0:
                return detector.placeholder
            start, end = match.span(detector.group)
            base = match.start(0)
            whole = match.group(0)
            return whole[: start - base] + detector.placeholder + whole[end - base :]

        return replace

    @property
    def count(self) -> int:
        return sum(self.withheld.values())

    def notice(self) -> str | None:
        """One sentence for the user, or None when nothing was withheld.

        e.g. "I withheld 2 items (an API key, an email address) from the language model."
        Counted per value found, including values in the thread history and the sources.
        """
        total = self.count
        if not total:
            return None
        # Detectors of one kind (the API-key family) are named once, their counts summed.
        by_noun: dict[str, tuple[Detector, int]] = {}
        for detector, n in self.withheld.items():
            seen = by_noun.get(detector.noun)
            by_noun[detector.noun] = (detector, n + (seen[1] if seen else 0))
        parts = [
            f"{d.article} {d.noun}" if n == 1 else f"{n} {d.plural}" for d, n in by_noun.values()
        ]
        items = "1 item" if total == 1 else f"{total} items"
        return f"I withheld {items} ({', '.join(parts)}) from the language model."


def redactor_for(eff: EffectiveSettings) -> Redactor:
    """A fresh redactor for one turn in the channel `eff` describes."""
    return Redactor(
        RedactionPolicy(
            secrets=eff.redact_secrets, pii=eff.redact_pii, patterns=dict(eff.redact_patterns)
        )
    )


def knowledge_redactor(settings: Settings) -> Callable[[str], str] | None:
    """What knowledge ingestion applies to every document when `CANDOR_REDACT_KNOWLEDGE` is on.

    Ingestion is not tied to a channel's settings, so it follows the environment:
    secrets per `CANDOR_REDACT_SECRETS`, personal data per `CANDOR_REDACT_PII` (no admin
    patterns, which are per channel). None when the switch is off.
    """
    if not settings.candor.redact_knowledge:
        return None
    policy = RedactionPolicy(secrets=settings.candor.redact_secrets, pii=settings.candor.redact_pii)
    if not policy.detectors():
        return None
    return lambda text: Redactor(policy).redact(text)
