"""Chunking: headings travel with their text, sizes follow the injected token counter, ids are stable."""

from __future__ import annotations

from knowledge import Chunker, Document, Scope, Section
from knowledge.chunking import chunk_id

DOC = """# Guide

Intro paragraph about the guide.

## Install

### Linux

Run the installer with sudo. Then reboot the machine.

### macOS

Drag the app to Applications.

```
# not a heading inside code
```

## Usage

Open the app and sign in.
"""


def doc(text: str, source: str = "file:/guide.md", scope: Scope | None = None) -> Document:
    return Document(source, "Guide", "/guide.md", scope or Scope.workspace(), text)


def words(text: str) -> int:
    return len(text.split())


def test_heading_path_is_carried_into_each_chunk() -> None:
    chunks = Chunker(size=200, overlap=0).chunk(doc(DOC))
    by_heading = {c.headings: c for c in chunks}
    linux = by_heading[("Guide", "Install", "Linux")]
    assert linux.text.startswith("Guide > Install > Linux\n")
    assert "sudo" in linux.text
    assert ("Guide", "Usage") in by_heading
    mac = by_heading[("Guide", "Install", "macOS")]
    assert "# not a heading inside code" in mac.text
    assert chunks[0].payload()["headings"] == ["Guide"]


def test_chunks_respect_token_budget_and_overlap() -> None:
    sentences = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(200))
    chunker = Chunker(size=40, overlap=10, count_tokens=words)
    chunks = chunker.chunk(doc(f"# Big\n\n{sentences}"))
    assert len(chunks) > 10
    assert all(words(c.text) <= 40 for c in chunks)
    # consecutive chunks share the last sentence(s) of the previous one
    first_tail = chunks[0].text.split(". ")[-1]
    assert first_tail.rstrip(".") in chunks[1].text


def test_a_single_huge_paragraph_without_punctuation_is_split_by_words() -> None:
    text = " ".join(f"w{i}" for i in range(1000))
    chunks = Chunker(size=50, overlap=0, count_tokens=words).chunk(doc(text))
    assert all(words(c.text) <= 50 for c in chunks)
    assert sum(words(c.text) for c in chunks) == 1000


def test_chunk_ids_are_deterministic_and_only_edited_chunks_change() -> None:
    chunker = Chunker(size=60, overlap=0)
    before = chunker.chunk(doc(DOC))
    again = chunker.chunk(doc(DOC))
    assert [c.id for c in before] == [c.id for c in again]
    edited = chunker.chunk(doc(DOC.replace("Drag the app", "Copy the app")))
    changed = {c.id for c in edited} - {c.id for c in before}
    assert len(changed) == 1
    assert len({c.id for c in before} - {c.id for c in edited}) == 1


def test_chunk_id_depends_on_source_and_scope() -> None:
    a = chunk_id("file:/a", "workspace", (), "text")
    assert a == chunk_id("file:/a", "workspace", (), "text")
    assert a != chunk_id("file:/b", "workspace", (), "text")
    assert a != chunk_id("file:/a", "channel:C1", (), "text")


def test_sections_keep_their_own_link_and_metadata() -> None:
    d = Document(
        "file:/x.pdf",
        "X",
        "/x.pdf",
        Scope.workspace(),
        "",
        (
            Section("Page one text.", "/x.pdf#page=1", {"page": "1"}),
            Section("Page two.", "/x.pdf#page=2", {"page": "2"}),
        ),
    )
    chunks = Chunker(size=100, overlap=0).chunk(d)
    assert [c.link for c in chunks] == ["/x.pdf#page=1", "/x.pdf#page=2"]
    assert chunks[1].payload()["metadata"] == {"page": "2"}
