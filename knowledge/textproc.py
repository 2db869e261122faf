"""Text to search terms, for prose and for code: the sparse retriever's tokenizer.

:func:`terms` turns text into the terms BM25 counts:

* **Words** are lower-cased (NFKC for non-ASCII text), stop words and one-letter words
  dropped, and lightly stemmed (:func:`stem`: plural endings), so *caches* meets *cache*.
* **Identifiers** are kept whole *and* split: ``os.path.join`` gives ``os.path.join``,
  ``os``, ``path``, ``join``; ``snake_case`` splits on ``_``, ``camelCase`` and
  ``HTTPResponse`` on case changes. The whole name (lower-cased, not stemmed) matches
  exact mentions; the parts match prose.
* **Operators** of two or more symbols (``**``, ``:=``, ``->``, ``//``, ``==``, ...) are
  terms of their own, so a question about ``:=`` finds the text that shows it.

Each distinct raw token is processed once and memoised (bounded), which keeps the
tokenizer at a few microseconds per token; :func:`terms` is the plain definition the
fast paths in :mod:`knowledge.embedders` are tested against.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# identifiers (dotted names included), numbers (dotted versions and addresses included),
# and operators of two or more symbols; everything else separates tokens
RAW_TOKEN = re.compile(
    r"[^\W\d]\w*(?:\.[^\W\d]\w*)*"
    r"|\d+(?:\.\d+)*"
    r"|\*\*=?|//=?|>>=?|<<=?|:=|->|=>|==|!=|<=|>=|\+=|-=|\*=|/=|%=|&=|\|=|\^=|@="
)

# RAW_TOKEN rewritten for speed, same matches (a test checks on real text): a lookahead on
# the characters a token can start with lets the scanner skip separators without trying
# every alternative, the operators share one class, and ASCII text (nearly every chunk)
# gets an ASCII-only pattern, which the regex engine runs about 40 % faster
_OPERATORS = r"\*\*=?|//=?|>>=?|<<=?|->|=>|[:=!<>+\-*/%&|^@]="
FAST_RAW_TOKEN = re.compile(
    r"(?=[\w*/<>:=!+\-%&|^@])"
    r"(?:[^\W\d]\w*(?:\.[^\W\d]\w*)*|\d+(?:\.\d+)*|" + _OPERATORS + ")"
)
FAST_RAW_TOKEN_ASCII = re.compile(
    r"(?=[\w*/<>:=!+\-%&|^@])"
    r"(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|\d+(?:\.\d+)*|" + _OPERATORS + ")",
    re.ASCII,
)


def raw_tokens(text: str) -> list[str]:
    """``RAW_TOKEN.findall(text)``, faster (the sparse embedder's hot path)."""
    if text.isascii():
        return FAST_RAW_TOKEN_ASCII.findall(text)
    return FAST_RAW_TOKEN.findall(text)


STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if
    in into is it its itself just me more most my myself no nor not now of off on once only
    or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you
    your yours yourself yourselves get got gets want need way use using used""".split()
)


def stem(word: str) -> str:
    """Harman's "S" stemmer: plural endings only (``-ies`` -> ``-y``, ``-es`` -> ``-e``, ``-s``).

    Light on purpose: on our labelled set a Porter-like stemmer that also strips ``-ed``,
    ``-ing`` and a final ``e`` did worse than this (NOTES.md has the numbers), and it
    never conflates words that merely look alike. Words of three letters or fewer, and
    words with digits, are left alone.
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def split_case(word: str) -> list[str]:
    """``getHTTPResponse`` -> ``get``, ``HTTP``, ``Response``; letters and digits apart."""
    parts: list[str] = []
    start = 0
    for i in range(1, len(word)):
        prev, cur = word[i - 1], word[i]
        nxt = word[i + 1] if i + 1 < len(word) else ""
        if (
            (prev.islower() and cur.isupper())
            or (prev.isupper() and cur.isupper() and nxt.islower())
            or (prev.isdigit() != cur.isdigit())
        ):
            parts.append(word[start:i])
            start = i
    parts.append(word[start:])
    return parts


def _word(part: str) -> str | None:
    lower = part.lower()
    if len(lower) < 2 or lower in STOPWORDS:
        return None
    return stem(lower)


def token_terms(raw: str) -> tuple[str, ...]:
    """The terms of one raw token (an identifier, a number or an operator), in order."""
    first = raw[0]
    if not (first.isalpha() or first == "_"):
        if first.isdigit():
            return (raw,) if len(raw) > 1 else ()
        return (raw,)  # an operator
    out: list[str] = []
    compound = (
        "." in raw
        or "_" in raw.strip("_")
        or (not raw.isupper() and any(c.isupper() for c in raw[1:]))
        or not raw.isalpha()
    )
    if compound and len(raw) > 2:
        out.append(raw.lower())
    for piece in re.split(r"[._]+", raw):
        for part in split_case(piece) if not (piece.islower() and piece.isalpha()) else (piece,):
            term = _word(part)
            if term is not None and term not in out:
                out.append(term)
    return tuple(out)


def normalize(text: str) -> str:
    """NFKC for non-ASCII text (a no-op on ASCII, and skipped there: it costs time)."""
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def terms(text: str) -> list[str]:
    """Every term of ``text`` in order, repeats kept (term frequency counts them)."""
    out: list[str] = []
    for raw in RAW_TOKEN.findall(normalize(text)):
        out.extend(token_terms(raw))
    return out


def has_terms(text: str) -> bool:
    """Whether ``terms(text)`` is non-empty, stopping at the first term."""
    return any(token_terms(raw) for raw in RAW_TOKEN.findall(normalize(text)))


def heading_line(text: str) -> str:
    """The heading path the chunker writes on a chunk's first line (``A > B``), or ``""``.

    A chunk's first line is taken as its heading when the text has more lines and the
    first one is short and does not end like a sentence."""
    head, sep, _ = text.partition("\n")
    if not sep or len(head) > 160 or head.rstrip().endswith((".", ",", ";", "!", "?")):
        return ""
    return head


def distinct(items: Iterable[str]) -> list[str]:
    """Items in first-seen order without repeats."""
    return list(dict.fromkeys(items))
