"""The document model shared by loaders, chunking and the knowledge base.

A :class:`Document` is one *source* — a file, an upload, a Slack channel — with a
stable ``source`` id. Re-ingesting the same source id replaces what was stored
for it. A document is made of :class:`Section` s: a PDF page, a Slack thread, or
simply the whole text; a section may carry its own link and metadata, which end
up in the payload of every chunk cut from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from knowledge.scopes import Scope


@dataclass(frozen=True)
class Section:
    """A part of a document with its own link or metadata (a page, a thread)."""

    text: str
    link: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Document:
    """One ingestible source.

    ``source`` is a stable id such as ``"file:/abs/path"`` or ``"slack:C123"``;
    ``link`` is what a reader follows (URL, permalink or file name). When
    ``sections`` is empty the whole ``text`` is one section.
    """

    source: str
    title: str
    link: str
    scope: Scope
    text: str
    sections: tuple[Section, ...] = ()

    def parts(self) -> tuple[Section, ...]:
        """The sections to chunk: ``sections`` or, if none, the whole text."""
        return self.sections or (Section(self.text),)
