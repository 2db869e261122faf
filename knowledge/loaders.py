"""Loaders: turn files, folders, uploads and Slack channels into :class:`Document` s.

Supported file kinds are Markdown, plain text, HTML (tags stripped with the
stdlib ``html.parser``; headings become Markdown headings so the chunker keeps
them) and PDF (``pypdf``, one section per page). Folders are walked
recursively; every file that is not loaded is reported with a reason instead of
failing the whole batch. Content that is not text (an executable or random bytes
under a ``.md`` name) is refused, never ingested as text.

Upload sources are keyed by scope and file name (``upload:<scope key>/<name>``), so
the same file name learned for two channels is two sources, not one replacing the
other.

The Slack loader is duck-typed against the ``slack_sdk`` ``AsyncWebClient``
shape (``conversations_history``, ``conversations_replies``,
``chat_getPermalink`` returning dict-like responses) so this package never
imports Slack code; the bot hands its client in.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from knowledge.documents import Document, Section
from knowledge.scopes import Scope

FileKind = Literal["markdown", "text", "html", "pdf"]

_EXTENSIONS: dict[str, FileKind] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".log": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
_MIMETYPES: dict[str, FileKind] = {
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
    "text/html": "html",
    "application/pdf": "pdf",
}
MAX_FILE_BYTES = 50 * 1024 * 1024
#: More control bytes than this share of a file means it is binary, not text.
MAX_CONTROL_SHARE = 0.02
NOT_TEXT = "The file is not text (it looks like binary data)."

log = logging.getLogger(__name__)

# Control bytes that never occur in text (tab, new lines, form feed and the ESC of
# terminal colours in logs do).
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1b") + b"\x7f"
_NOT_CONTROL = bytes(b for b in range(256) if b not in _CONTROL_BYTES)


class UnsupportedFile(ValueError):
    """Raised when a file cannot be loaded; the message says why in one sentence."""


@dataclass(frozen=True)
class SkippedFile:
    """A file a folder load did not ingest, and why."""

    path: str
    reason: str


@dataclass
class LoadResult:
    """Documents loaded from paths, plus the files skipped with reasons."""

    documents: list[Document] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


# --------------------------------------------------------------------------- text formats


def _decode(data: bytes) -> str:
    """Text of a file, or :class:`UnsupportedFile` when the bytes are not text."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        data = data.decode("utf-16", errors="replace").encode("utf-8")
    # Text never holds NUL; executables and random bytes nearly always do. Counting
    # control bytes catches the rest (translate runs in C, so 50 MB takes milliseconds).
    controls = len(data.translate(None, _NOT_CONTROL))
    if b"\x00" in data or controls > MAX_CONTROL_SHARE * len(data):
        raise UnsupportedFile(NOT_TEXT)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _markdown_title(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip() or None
    return None


class _HTMLText(HTMLParser):
    """Collects visible text; headings become ``#`` lines, blocks become new lines."""

    _SKIP: ClassVar[frozenset[str]] = frozenset(
        {"script", "style", "head", "noscript", "template", "svg"}
    )
    _BLOCK: ClassVar[frozenset[str]] = frozenset(
        {
            "p",
            "div",
            "br",
            "tr",
            "table",
            "section",
            "article",
            "ul",
            "ol",
            "pre",
            "blockquote",
            "hr",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self._SKIP:
            self._skip_depth += 1
        elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif (len(tag) == 2 and tag[0] == "h" and tag[1] in "123456") or tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._skip_depth == 0:
            self.parts.append(data)

    def text(self) -> str:
        lines = [" ".join(line.split()) for line in "".join(self.parts).splitlines()]
        out: list[str] = []
        for line in lines:
            if line or (out and out[-1]):
                out.append(line)
        return "\n".join(out).strip()


def html_to_text(html: str) -> tuple[str, str]:
    """Return ``(title, text)`` of an HTML page; headings are kept as Markdown headings."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = parser.text()
    title = " ".join(parser.title.split()) or (_markdown_title(text) or "")
    return title, text


def _pdf_sections(data: bytes, link: str) -> tuple[str | None, list[Section]]:
    from pypdf import PdfReader  # lazy: only PDF loads pay for it
    from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

    try:
        reader = PdfReader(io.BytesIO(data))
        sections: list[Section] = []
        for number, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").strip()
            if text:
                sections.append(
                    Section(text, link=f"{link}#page={number}", metadata={"page": str(number)})
                )
        meta_title = reader.metadata.title if reader.metadata else None
    except FileNotDecryptedError as exc:
        raise UnsupportedFile("The PDF is encrypted.") from exc
    except DependencyError as exc:
        log.info("PDF %s needs a decoder that is not installed: %s", link, exc)
        raise UnsupportedFile("The PDF uses an encoding Candor cannot decode.") from exc
    except LimitReachedError as exc:
        log.info("PDF %s hit a pypdf safety limit: %s", link, exc)
        raise UnsupportedFile("The PDF is malformed or too large to read safely.") from exc
    except Exception as exc:  # pypdf raises many kinds on malformed input
        log.info("PDF %s could not be read: %r", link, exc)
        raise UnsupportedFile("The PDF could not be read (it may be damaged).") from exc
    return (str(meta_title).strip() or None) if meta_title else None, sections


def _document_from_bytes(
    data: bytes, kind: FileKind, *, source: str, name: str, link: str, scope: Scope
) -> Document:
    stem = Path(name).stem or name
    if kind == "pdf":
        title, sections = _pdf_sections(data, link)
        if not sections:
            raise UnsupportedFile("The PDF has no extractable text (it may be scanned images).")
        text = "\n\n".join(s.text for s in sections)
        return Document(source, title or stem, link, scope, text, tuple(sections))
    raw = _decode(data)
    if kind == "html":
        html_title, text = html_to_text(raw)
        title = html_title or stem
    else:
        text = raw.strip()
        title = (_markdown_title(text) if kind == "markdown" else None) or stem
    if not text.strip():
        raise UnsupportedFile("The file has no text.")
    return Document(source, title, link, scope, text)


# --------------------------------------------------------------------------- files and folders


def file_kind(name: str, mimetype: str | None = None) -> FileKind | None:
    """The kind of file by MIME type (if known) or extension; ``None`` if unsupported."""
    if mimetype:
        base = mimetype.split(";", 1)[0].strip().lower()
        if base in _MIMETYPES:
            return _MIMETYPES[base]
    return _EXTENSIONS.get(Path(name).suffix.lower())


def load_file(path: str | os.PathLike[str], scope: Scope) -> Document:
    """Load one file; raises :class:`UnsupportedFile` with a reason if it cannot be loaded."""
    p = Path(path).resolve()
    kind = file_kind(p.name)
    if kind is None:
        raise UnsupportedFile(f"Files of type '{p.suffix or p.name}' are not supported.")
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UnsupportedFile(f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB.")
        data = p.read_bytes()
    except OSError as exc:
        raise UnsupportedFile(f"The file could not be read ({exc.strerror or exc}).") from exc
    return _document_from_bytes(
        data, kind, source=f"file:{p}", name=p.name, link=str(p), scope=scope
    )


def load_paths(paths: Iterable[str | os.PathLike[str]], scope: Scope) -> LoadResult:
    """Load files and folders (recursively, hidden entries skipped), reporting what was skipped."""
    result = LoadResult()
    for path in paths:
        p = Path(path)
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.exists():
            files = [p]
        else:
            result.skipped.append(SkippedFile(str(p), "The path does not exist."))
            continue
        for f in files:
            try:
                result.documents.append(load_file(f, scope))
            except UnsupportedFile as exc:
                result.skipped.append(SkippedFile(str(f), str(exc)))
            except Exception:  # one bad file never stops the batch
                log.exception("Loading %s failed", f)
                result.skipped.append(SkippedFile(str(f), "The file could not be read."))
    return result


def load_folder(path: str | os.PathLike[str], scope: Scope) -> LoadResult:
    """Load every supported file under ``path``."""
    return load_paths([path], scope)


def upload_source(filename: str, scope: Scope) -> str:
    """The source name of an uploaded file: one per scope and file name."""
    return f"upload:{scope.key}/{filename}"


def load_upload(
    data: bytes,
    filename: str,
    mimetype: str | None,
    scope: Scope,
    *,
    source: str | None = None,
    link: str | None = None,
) -> Document:
    """Load an uploaded file (for example a Slack file share).

    ``source`` defaults to ``"upload:<scope key>/<filename>"`` so uploading a new
    version of the same file name for the same scope replaces the old one, while the
    same name learned for another scope is a source of its own; ``link`` defaults to
    the file name.
    """
    kind = file_kind(filename, mimetype)
    if kind is None:
        raise UnsupportedFile(
            f"Uploads of type '{mimetype or Path(filename).suffix}' are not supported."
        )
    if len(data) > MAX_FILE_BYTES:
        raise UnsupportedFile(f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB.")
    return _document_from_bytes(
        data,
        kind,
        source=source or upload_source(filename, scope),
        name=filename,
        link=link or filename,
        scope=scope,
    )


# --------------------------------------------------------------------------- Slack


class SlackClient(Protocol):
    """The slice of ``slack_sdk.web.async_client.AsyncWebClient`` the channel loader uses."""

    async def conversations_history(
        self, *, channel: str, cursor: str | None = ..., oldest: str | None = ...
    ) -> Any: ...

    async def conversations_replies(
        self, *, channel: str, ts: str, cursor: str | None = ...
    ) -> Any: ...

    async def chat_getPermalink(self, *, channel: str, message_ts: str) -> Any: ...


_SKIPPED_SUBTYPES = {
    "channel_join",
    "channel_leave",
    "channel_topic",
    "channel_purpose",
    "channel_name",
}


def _next_cursor(response: Mapping[str, Any]) -> str | None:
    meta = response.get("response_metadata") or {}
    cursor = meta.get("next_cursor") if isinstance(meta, Mapping) else None
    return str(cursor) if cursor else None


def _message_line(message: Mapping[str, Any]) -> str | None:
    if message.get("subtype") in _SKIPPED_SUBTYPES:
        return None
    text = str(message.get("text") or "").strip()
    if not text:
        return None
    who = message.get("user") or message.get("username") or message.get("bot_id") or "someone"
    return f"<@{who}>: {text}" if message.get("user") else f"{who}: {text}"


def _day(ts: str) -> str:
    return datetime.fromtimestamp(float(ts), tz=UTC).strftime("%Y-%m-%d")


async def load_slack_channel(
    client: SlackClient,
    channel_id: str,
    scope: Scope,
    *,
    channel_name: str | None = None,
    max_messages: int = 10_000,
    oldest: str | None = None,
    source: str | None = None,
) -> Document:
    """Load a channel's history with its threads as one document (``source="slack:<id>"``).

    Each thread becomes a section linked to its root's permalink; messages
    outside threads are grouped per day, linked to the day's first message.
    ``oldest`` (a Slack ts) reads only the messages posted after it, for an incremental
    sync that stores them as a source of their own (``source``).
    """
    roots: list[Mapping[str, Any]] = []
    cursor: str | None = None
    while len(roots) < max_messages:
        if oldest is None:
            response = await client.conversations_history(channel=channel_id, cursor=cursor)
        else:
            response = await client.conversations_history(
                channel=channel_id, cursor=cursor, oldest=oldest
            )
        roots.extend(response.get("messages") or [])
        cursor = _next_cursor(response)
        if not cursor:
            break
    roots = sorted(roots[:max_messages], key=lambda m: float(m.get("ts", "0")))

    sections: list[Section] = []
    day_lines: list[str] = []
    day_first_ts: str | None = None

    async def permalink(ts: str) -> str | None:
        response = await client.chat_getPermalink(channel=channel_id, message_ts=ts)
        link = response.get("permalink")
        return str(link) if link else None

    async def flush_day() -> None:
        nonlocal day_lines, day_first_ts
        if day_lines and day_first_ts:
            link = await permalink(day_first_ts)
            sections.append(Section("\n".join(day_lines), link=link, metadata={"ts": day_first_ts}))
        day_lines, day_first_ts = [], None

    for message in roots:
        ts = str(message.get("ts", ""))
        if not ts:
            continue
        if int(message.get("reply_count") or 0) > 0:
            await flush_day()
            lines: list[str] = []
            reply_cursor: str | None = None
            while True:
                kwargs: dict[str, Any] = {"channel": channel_id, "ts": ts}
                if reply_cursor:
                    kwargs["cursor"] = reply_cursor
                replies = await client.conversations_replies(**kwargs)
                lines.extend(
                    line for m in replies.get("messages") or [] if (line := _message_line(m))
                )
                reply_cursor = _next_cursor(replies)
                if not reply_cursor:
                    break
            if lines:
                sections.append(
                    Section("\n".join(lines), link=await permalink(ts), metadata={"ts": ts})
                )
            continue
        line = _message_line(message)
        if line is None:
            continue
        if day_first_ts is not None and _day(day_first_ts) != _day(ts):
            await flush_day()
        if day_first_ts is None:
            day_first_ts = ts
        day_lines.append(line)
    await flush_day()

    name = channel_name or channel_id
    text = "\n\n".join(s.text for s in sections)
    link = next((s.link for s in sections if s.link), f"slack:{channel_id}")
    return Document(
        source or f"slack:{channel_id}", f"#{name}", link, scope, text, tuple(sections)
    )
