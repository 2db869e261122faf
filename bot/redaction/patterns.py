"""Admin-defined patterns: checked before they are stored, compiled when a turn needs them.

A pattern is a name (what the placeholder says: `[redacted TICKET]`) and a regular
expression. Python's `re` has no time limit, so a pattern is refused unless it is
plainly cheap on any text: at most `MAX_PATTERN_CHARS` characters, it compiles, it
cannot match the empty string, no backreferences, no repetition nested inside another
repetition (`(a+)+`), no alternatives inside a repetition (`(a|ab)*`), and at most
`MAX_UNBOUNDED` open-ended repeats (`+`, `*`, `{n,}`). Those are the shapes behind
catastrophic backtracking; what is left runs in time proportional to the text times a
small constant. Every refusal is one sentence (`InvalidPattern`).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bot.errors import CandorError
from bot.redaction.detectors import ADMIN, Detector

log = logging.getLogger(__name__)

MAX_PATTERN_CHARS = 200
MAX_PATTERNS = 20
MAX_UNBOUNDED = 3
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
_SLACK_ESCAPES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
# The parser behind `re.compile`; its tree is what shows nested repetition. Imported by
# name because it is private (and has no type stubs); the shapes it returns are stable.
_parser: Any = importlib.import_module("re._parser")


class InvalidPattern(CandorError):
    """An admin's pattern was refused; `user_message` says why in one sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_message=message)


def parse_name(raw: str) -> str:
    """A pattern name: a letter, then letters, digits, `_` or `-`, at most 32 characters."""
    name = raw.strip()
    if not _NAME.match(name):
        raise InvalidPattern(
            f"`{raw}` is not a pattern name: use a letter followed by letters, digits, "
            "`_` or `-` (at most 32 characters), for example `TICKET`."
        )
    return name


def check_regex(raw: str) -> str:
    """The regex an admin typed, if it is safe to run on every message; else one sentence.

    Slack escapes `<`, `>` and `&` in slash-command text; they are unescaped first.
    """
    regex = raw
    for escaped, plain in _SLACK_ESCAPES:
        regex = regex.replace(escaped, plain)
    if not regex.strip():
        raise InvalidPattern("Give a regular expression in single quotes, e.g. 'PROJ-[0-9]{1,6}'.")
    if len(regex) > MAX_PATTERN_CHARS:
        raise InvalidPattern(
            f"That pattern has {len(regex)} characters; the limit is {MAX_PATTERN_CHARS}."
        )
    try:
        compiled = re.compile(regex)
        tree = _parser.parse(regex)
    except (re.error, RecursionError, OverflowError) as exc:
        reason = getattr(exc, "msg", None) or "it does not parse"
        raise InvalidPattern(
            f"That is not a valid regular expression ({reason}); nothing was changed."
        ) from None
    problem = _backtracking_risk(tree)
    if problem is not None:
        raise InvalidPattern(
            f"That pattern could take too long on long messages ({problem}); "
            "use a simpler one, for example 'PROJ-[0-9]{1,6}'."
        )
    if compiled.search("") is not None:
        raise InvalidPattern(
            "That pattern matches empty text, so it would match everywhere; "
            "make at least one character required."
        )
    return regex


def _backtracking_risk(tree: Any) -> str | None:
    unbounded = 0

    def walk(items: Iterable[Any], in_repeat: bool) -> str | None:
        nonlocal unbounded
        for op, av in items:
            name = str(op)
            if name in ("GROUPREF", "GROUPREF_EXISTS"):
                return "a backreference"
            if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                _low, high, body = av
                repeats = high is _parser.MAXREPEAT or high > 1
                if high is _parser.MAXREPEAT:
                    unbounded += 1
                    if unbounded > MAX_UNBOUNDED:
                        return f"more than {MAX_UNBOUNDED} open-ended repeats"
                if repeats and in_repeat:
                    return "a repeat inside a repeat"
                found = walk(body, in_repeat or repeats)
                if found:
                    return found
            elif name == "BRANCH":
                if in_repeat:
                    return "alternatives inside a repeat"
                for branch in av[1]:
                    found = walk(branch, in_repeat)
                    if found:
                        return found
            elif name == "SUBPATTERN":
                found = walk(av[-1], in_repeat)
                if found:
                    return found
            elif name in ("ASSERT", "ASSERT_NOT"):
                found = walk(av[1], in_repeat)
                if found:
                    return found
            elif name == "ATOMIC_GROUP":
                found = walk(av, in_repeat)
                if found:
                    return found
        return None

    return walk(tree, False)


def admin_detectors(patterns: Mapping[str, str] | None) -> tuple[Detector, ...]:
    """Detectors for a channel's stored patterns; one that no longer passes is skipped.

    (A pattern stored by an older release, or written into the database by hand, must not
    break every answer in the channel: it is logged and left out.)
    """
    detectors: list[Detector] = []
    for name, regex in sorted((patterns or {}).items()):
        try:
            checked = check_regex(str(regex))
            label = parse_name(str(name))
        except InvalidPattern as exc:
            log.warning("Skipping the redaction pattern %r: %s", name, exc.user_message)
            continue
        detectors.append(
            Detector(
                kind=f"admin:{label}",
                category=ADMIN,
                noun=label,
                article="a value matching",
                plural=f"values matching {label}",
                pattern=re.compile(checked),
            )
        )
    return tuple(detectors)
