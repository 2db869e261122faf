"""Loaders: files of each kind, folders with skip reasons, uploads and a Slack channel."""

from __future__ import annotations

import importlib.util
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from knowledge import (
    Scope,
    UnsupportedFile,
    load_file,
    load_folder,
    load_slack_channel,
    load_upload,
)
from knowledge.loaders import html_to_text

from .conftest import CORPUS


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one text line per page (Helvetica)."""
    objects: list[bytes] = []
    n_pages = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    font_id = 3 + 2 * n_pages
    for i, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = b"%PDF-1.4\n"
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return out


def test_markdown_file_uses_first_heading_as_title() -> None:
    d = load_file(CORPUS / "handbook" / "vacation-policy.md", Scope.workspace())
    assert d.title == "Vacation policy"
    assert d.source == f"file:{(CORPUS / 'handbook' / 'vacation-policy.md').resolve()}"
    assert "25 days" in d.text


def test_html_strips_tags_scripts_and_keeps_headings() -> None:
    d = load_file(CORPUS / "handbook" / "onboarding.html", Scope.workspace())
    assert d.title == "Onboarding guide"
    assert "do not index me" not in d.text
    assert "color: red" not in d.text
    assert "<b>" not in d.text and "badge" in d.text
    assert "## Buddy program" in d.text
    assert "- Weekly coffee with your buddy" in d.text


def test_html_entities_are_decoded() -> None:
    _, text = html_to_text("<p>Fish &amp; chips &lt;3</p>")
    assert text == "Fish & chips <3"


def test_pdf_is_loaded_page_by_page(tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    path.write_bytes(make_pdf(["Hello from page one", "Second page text"]))
    d = load_file(path, Scope.workspace())
    assert [s.metadata["page"] for s in d.sections] == ["1", "2"]
    assert "Hello from page one" in d.sections[0].text
    assert d.sections[1].link == f"{path.resolve()}#page=2"


def test_broken_pdf_is_reported_not_raised_in_folder(tmp_path: Path) -> None:
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 garbage")
    (tmp_path / "ok.txt").write_text("fine text")
    result = load_folder(tmp_path, Scope.workspace())
    assert [Path(d.link).name for d in result.documents] == ["ok.txt"]
    assert [Path(s.path).name for s in result.skipped] == ["bad.pdf"]


def test_folder_is_recursive_and_skips_unsupported_with_reason(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "a.md").write_text("# A\n\ntext a")
    (tmp_path / "b.txt").write_text("text b")
    (tmp_path / "empty.md").write_text("   ")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config.txt").write_text("hidden")
    result = load_folder(tmp_path, Scope.workspace())
    assert sorted(d.title for d in result.documents) == ["A", "b"]
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert reasons["image.png"] == "Files of type '.png' are not supported."
    assert reasons["empty.md"] == "The file has no text."
    assert "config.txt" not in reasons


def test_corpus_folder_skips_the_spreadsheet() -> None:
    result = load_folder(CORPUS / "handbook", Scope.workspace())
    assert len(result.documents) == 8
    assert [Path(s.path).name for s in result.skipped] == ["unsupported.xlsx"]


def test_upload_uses_mimetype_and_filename() -> None:
    d = load_upload(b"# Notes\n\nhello", "notes", "text/markdown", Scope.channel("C1"))
    assert (d.source, d.title, d.link, d.scope.key) == (
        "upload:channel:C1/notes",
        "Notes",
        "notes",
        "channel:C1",
    )
    pdf = load_upload(
        make_pdf(["Uploaded pdf"]),
        "x.pdf",
        "application/pdf",
        Scope.workspace(),
        source="slack-file:F1",
    )
    assert pdf.source == "slack-file:F1" and "Uploaded pdf" in pdf.text
    with pytest.raises(UnsupportedFile, match="not supported"):
        load_upload(b"zip", "x.zip", "application/zip", Scope.workspace())


def limit_pdf() -> bytes:
    """A PDF whose xref table declares more entries than the file could hold."""
    return re.sub(rb"xref\n0 \d+\n", b"xref\n0 99999999\n", make_pdf(["Never read"]))


def brotli_pdf() -> bytes:
    """A PDF whose page content needs a decoder pypdf does not have here (brotli)."""
    return make_pdf(["Never read"]).replace(b"<< /Length", b"<< /Filter /BrotliDecode /Length")


def test_pdfs_pypdf_refuses_are_named_and_the_rest_of_the_folder_loads(tmp_path: Path) -> None:
    (tmp_path / "good.pdf").write_bytes(make_pdf(["Good page"]))
    (tmp_path / "limit.pdf").write_bytes(limit_pdf())
    (tmp_path / "notes.md").write_text("# Notes\n\nfine")
    if importlib.util.find_spec("brotli") is None:  # with brotli installed it would load
        (tmp_path / "brotli.pdf").write_bytes(brotli_pdf())

    result = load_folder(tmp_path, Scope.workspace())

    assert sorted(Path(d.link).name for d in result.documents) == ["good.pdf", "notes.md"]
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert reasons["limit.pdf"] == "The PDF is malformed or too large to read safely."
    if "brotli.pdf" in reasons:
        assert reasons["brotli.pdf"] == "The PDF uses an encoding Candor cannot decode."


@pytest.mark.parametrize(
    "data",
    [
        random.Random(8).randbytes(64 * 1024),  # random bytes
        b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 64,  # an executable
        bytes(b % 32 for b in random.Random(9).randbytes(4096) if b % 32 != 0),  # no NUL
    ],
    ids=["random", "executable", "control-bytes"],
)
def test_binary_content_under_a_text_name_is_refused(data: bytes, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFile) as refused:
        load_upload(data, "notes.md", "text/markdown", Scope.workspace())
    assert str(refused.value) == "The file is not text (it looks like binary data)."
    (tmp_path / "notes.md").write_bytes(data)
    assert load_folder(tmp_path, Scope.workspace()).documents == []


def test_text_that_only_looks_unusual_is_still_text() -> None:
    utf16 = "# Notes\n\nCafé au lait".encode("utf-16")
    assert "Café au lait" in load_upload(utf16, "n.md", None, Scope.workspace()).text
    cp1252 = "Caf\xe9 \u201cquoted\u201d".encode("cp1252")
    assert "Café" in load_upload(cp1252, "n.txt", None, Scope.workspace()).text
    coloured = b"\x1b[32mINFO\x1b[0m worker started\n" * 50
    assert "worker started" in load_upload(coloured, "run.log", None, Scope.workspace()).text


def test_same_upload_name_in_two_scopes_is_two_sources() -> None:
    eng = load_upload(b"eng plan", "plan.md", None, Scope.channel("C1"))
    sales = load_upload(b"sales plan", "plan.md", None, Scope.channel("G2", private=True))
    assert eng.source == "upload:channel:C1/plan.md"
    assert sales.source == "upload:channel:G2/plan.md"


class FakeSlack:
    """A tiny stand-in for AsyncWebClient: two history pages, one thread with two reply pages."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def conversations_history(
        self, *, channel: str, cursor: str | None = None
    ) -> Mapping[str, Any]:
        self.calls.append(("history", {"channel": channel, "cursor": cursor}))
        if cursor is None:
            return {
                "ok": True,
                "messages": [
                    {"ts": "1700000300.000100", "user": "U2", "text": "Standup moved to 10:30"},
                    {
                        "ts": "1700000200.000100",
                        "user": "U1",
                        "text": "How do we rotate the API key?",
                        "reply_count": 3,
                    },
                ],
                "response_metadata": {"next_cursor": "page2"},
            }
        return {
            "ok": True,
            "messages": [
                {
                    "ts": "1700000100.000100",
                    "subtype": "channel_join",
                    "user": "U3",
                    "text": "joined",
                },
                {"ts": "1700000000.000100", "user": "U1", "text": "Welcome to the channel"},
            ],
            "response_metadata": {"next_cursor": ""},
        }

    async def conversations_replies(
        self, *, channel: str, ts: str, cursor: str | None = None
    ) -> Mapping[str, Any]:
        self.calls.append(("replies", {"channel": channel, "ts": ts, "cursor": cursor}))
        if cursor is None:
            return {
                "messages": [
                    {"ts": ts, "user": "U1", "text": "How do we rotate the API key?"},
                    {"ts": "1700000201.0", "user": "U2", "text": "Run keyctl rotate in the vault"},
                ],
                "response_metadata": {"next_cursor": "r2"},
            }
        return {"messages": [{"ts": "1700000202.0", "bot_id": "B1", "text": "Noted"}]}

    async def chat_getPermalink(self, *, channel: str, message_ts: str) -> Mapping[str, Any]:
        self.calls.append(("permalink", {"channel": channel, "message_ts": message_ts}))
        return {
            "ok": True,
            "permalink": f"https://example.slack.com/archives/{channel}/p{message_ts.replace('.', '')}",
        }


async def test_slack_channel_loader_reads_history_threads_and_permalinks() -> None:
    slack = FakeSlack()
    d = await load_slack_channel(slack, "C42", Scope.channel("C42"), channel_name="ops")
    assert d.source == "slack:C42" and d.title == "#ops"
    texts = [s.text for s in d.sections]
    assert texts[0] == "<@U1>: Welcome to the channel"  # join message skipped
    assert "Run keyctl rotate in the vault" in texts[1] and "B1: Noted" in texts[1]
    assert texts[2] == "<@U2>: Standup moved to 10:30"
    assert d.sections[1].link == "https://example.slack.com/archives/C42/p1700000200000100"
    assert d.sections[1].metadata == {"ts": "1700000200.000100"}
    assert ("history", {"channel": "C42", "cursor": "page2"}) in slack.calls
    assert ("replies", {"channel": "C42", "ts": "1700000200.000100", "cursor": "r2"}) in slack.calls
