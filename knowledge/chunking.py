"""Token-aware chunking that keeps Markdown headings with their text.

Each section of a document is split into blocks at Markdown headings; every
block remembers its heading path (``("Guide", "Install", "Linux")``). Blocks are
packed paragraph by paragraph into chunks of at most ``size`` tokens (counted
with the injected ``count_tokens``); a paragraph that is too long on its own is
split at sentences, then at words. Consecutive chunks of one block share about
``overlap`` tokens. The heading path is written at the top of every chunk's
text, so a chunk found on its own still says what it is about.

Chunk ids are ``uuid5(source, scope, heading path, text)``: re-ingesting an
unchanged source yields the same ids, and an edit changes only the ids of the
chunks whose text changed. The knowledge base uses that to upsert only new
chunks and delete the ones that disappeared.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from knowledge.documents import Document
from knowledge.tokens import CountTokens, estimate_tokens

CHUNK_NAMESPACE = uuid.UUID("6f1c2b4e-1f3a-5c7d-9e8f-0a1b2c3d4e5f")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a document, ready to embed and store."""

    id: str
    source: str
    title: str
    link: str
    scope_key: str
    visibility: str
    text: str
    headings: tuple[str, ...]
    index: int
    metadata: Mapping[str, str] = field(default_factory=dict)

    def payload(self) -> dict[str, object]:
        """The payload stored with the chunk's vectors."""
        return {
            "source": self.source,
            "title": self.title,
            "link": self.link,
            "scope": self.scope_key,
            "visibility": self.visibility,
            "text": self.text,
            "headings": list(self.headings),
            "metadata": dict(self.metadata),
        }


def chunk_id(source: str, scope_key: str, headings: tuple[str, ...], text: str) -> str:
    """Deterministic chunk id from where the chunk lives and what it says."""
    name = "\x1f".join((source, scope_key, " > ".join(headings), text))
    return str(uuid.uuid5(CHUNK_NAMESPACE, name))


def _blocks(text: str) -> Iterator[tuple[tuple[str, ...], str]]:
    """Split Markdown into (heading path, body) blocks; fenced code is never read as headings."""
    path: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            if any(b.strip() for b in body):
                yield tuple(h for _, h in path), "\n".join(body).strip()
            body = []
            level = len(match.group(1))
            path = [(lvl, h) for lvl, h in path if lvl < level]
            path.append((level, match.group(2).strip()))
        else:
            body.append(line)
    if any(b.strip() for b in body):
        yield tuple(h for _, h in path), "\n".join(body).strip()


class Chunker:
    """Splits documents into :class:`Chunk` s of at most ``size`` tokens with ``overlap``."""

    def __init__(
        self, size: int = 300, overlap: int = 40, count_tokens: CountTokens = estimate_tokens
    ) -> None:
        if size < 16:
            raise ValueError("Chunk size must be at least 16 tokens.")
        if not 0 <= overlap < size // 2:
            raise ValueError("Chunk overlap must be between 0 and half the chunk size.")
        self.size = size
        self.overlap = overlap
        self.count_tokens = count_tokens

    def _pieces(self, body: str, budget: int) -> Iterator[tuple[str, int, str]]:
        """Yield (text, tokens, joiner) pieces no larger than ``budget`` tokens."""
        for para in re.split(r"\n\s*\n", body):
            para = para.strip()
            if not para:
                continue
            n = self.count_tokens(para)
            if n <= budget:
                yield para, n, "\n\n"
                continue
            for sentence in _SENTENCE_END.split(para):
                m = self.count_tokens(sentence)
                if m <= budget:
                    yield sentence, m, " "
                    continue
                words = sentence.split()
                step = max(1, len(words) * budget // (m + 1))
                for i in range(0, len(words), step):
                    piece = " ".join(words[i : i + step])
                    yield piece, self.count_tokens(piece), " "

    def _pack(self, body: str, budget: int) -> Iterator[str]:
        current: list[tuple[str, int, str]] = []
        used = 0
        for piece in self._pieces(body, budget):
            if current and used + piece[1] > budget:
                yield _join(current)
                tail: list[tuple[str, int, str]] = []
                carried = 0
                for prev in reversed(current):
                    if carried + prev[1] > self.overlap:
                        break
                    tail.insert(0, prev)
                    carried += prev[1]
                if carried + piece[1] > budget:
                    tail, carried = [], 0
                current, used = tail, carried
            current.append(piece)
            used += piece[1]
        if current:
            yield _join(current)

    def chunk(self, doc: Document) -> list[Chunk]:
        """Cut ``doc`` into chunks; identical chunks within one source are kept once."""
        chunks: list[Chunk] = []
        seen: set[str] = set()
        for section in doc.parts():
            for headings, body in _blocks(section.text):
                header = " > ".join(headings)
                budget = self.size - (self.count_tokens(header) + 1 if header else 0)
                for text in self._pack(body, max(8, budget)):
                    full = f"{header}\n{text}" if header else text
                    cid = chunk_id(doc.source, doc.scope.key, headings, full)
                    if cid in seen:
                        continue
                    seen.add(cid)
                    chunks.append(
                        Chunk(
                            id=cid,
                            source=doc.source,
                            title=doc.title,
                            link=section.link or doc.link,
                            scope_key=doc.scope.key,
                            visibility=doc.scope.visibility,
                            text=full,
                            headings=headings,
                            index=len(chunks),
                            metadata=dict(section.metadata),
                        )
                    )
        return chunks


def _join(pieces: list[tuple[str, int, str]]) -> str:
    out = pieces[0][0]
    for text, _, joiner in pieces[1:]:
        out += joiner + text
    return out
