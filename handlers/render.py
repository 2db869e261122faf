"""Turning an `Answer` into what Slack shows: mrkdwn, message splits, the footer.

Everything here is pure (no Slack client), so it is tested directly:

- `to_mrkdwn(markdown)`: models write CommonMark; Slack's `chat.postMessage` text wants
  mrkdwn. Bold, links, headings, strike-through and bullets are rewritten; code blocks and
  inline code are left untouched; `&`, `<`, `>` are escaped except in Slack's own tokens
  (`<@U1>`, `<#C1>`, `<https://...|x>`). The streaming API (`chat.appendStream`) takes
  markdown as is, so the streamed path sends the model's text unchanged.
- `MessageSplitter`: Slack refuses long messages (`msg_too_long`), so answers are cut
  into messages of about `SOFT_LIMIT` characters while they stream: at a line boundary
  once past the soft limit, mid-line only past `HARD_LIMIT`, and a code fence that is open
  at a cut is closed and reopened in the next message.
- `footer_blocks` / `footer_text`: a warning line when the answer is flagged (its main
  reason; "I found no source" for an honest no-answer), sources, notices, a context line
  (model, tokens), and the feedback and **Ask a human** buttons.
- `review_blocks` / `correction_modal`: what reviewers see in the review channel (question,
  answer, reasons, scores, a permalink, **Mark resolved** / **Write a correction**) and
  the correction modal.
- `defuse_pings` / `PingGuard`: a model (or a document it quotes) can write `<!channel>`,
  `<!here>`, `<!everyone>`, `<!subteam^…>` or a bare `@here`; Candor never posts them as
  live pings. They are shown with a zero-width space after the `@` (or after the `<`),
  which reads the same and notifies nobody. `PingGuard` does it for streamed deltas,
  holding back a trailing `<` or `@cha` until the next delta says what it becomes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.conversation import Answer
from bot.review.items import CORRECTION_MAX_CHARS, ReviewItem

SOFT_LIMIT = 3_500
HARD_LIMIT = 3_900
CUT_OFF = "…(answer cut off: Candor was restarting)"
EMPTY_ANSWER = "The model returned an empty answer; please try asking again in other words."
GENERIC_FAILURE = "Sorry, something went wrong on Candor's side; the team has been told."
FEEDBACK_ACTION = "candor_feedback"
ASK_HUMAN_ACTION = "candor_ask_human"
REVIEW_RESOLVE_ACTION = "candor_review_resolve"
REVIEW_CORRECT_ACTION = "candor_review_correct"
CORRECTION_MODAL = "candor_review_correction"
CORRECTION_BLOCK = "correction"
CORRECTION_INPUT = "text"
KNOWLEDGE_BLOCK = "knowledge"
KNOWLEDGE_INPUT = "add"

SUGGESTED_PROMPTS: list[dict[str, str]] = [
    {"title": "Ask the knowledge base", "message": "What is our process for shipping a release?"},
    {"title": "Summarize", "message": "Summarize the key points of this text for me:"},
    {"title": "Draft a reply", "message": "Help me write a short, friendly reply to:"},
]

# --- markdown -> mrkdwn -------------------------------------------------------------

_FENCE = re.compile(r"(```.*?(?:```|\Z))", re.S)
_INLINE_CODE = re.compile(r"(`[^`\n]+`)")
# Kept as written when escaping: user and channel mentions and links. Never `<!...>`
# specials (`<!channel>`, `<!subteam^…>`): those are pings, see `defuse_pings`.
_SLACK_TOKEN = re.compile(r"<(?:[@#][^<>\s]+|(?:https?|mailto):[^<>\s]+)(?:\|[^<>]*)?>")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.M)
_BOLD_MARK = "\x00B\x00"


# --- mass pings ------------------------------------------------------------------------

ZWSP = "\u200b"
_PING_WORDS = ("channel", "here", "everyone")
_SPECIAL = re.compile(r"<!([^<>|\s]*)(?:\|([^<>]*))?>")
_OPEN_SPECIAL = re.compile(r"<(?=!)")
_BARE_PING = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.I)
#: A tail that may still become a ping with the next delta: `<`, `<!…` (unclosed), `@he`.
_PING_TAIL = re.compile(r"(?:<(?:![^<>\n]{0,100})?|@[A-Za-z]{0,8})\Z")


def _special(match: re.Match[str]) -> str:
    name, label = match.group(1), match.group(2)
    if name.lower() in _PING_WORDS or name.lower() == "group":
        return f"@{ZWSP}{name.lower()}"
    if name.startswith("subteam^"):
        return f"@{ZWSP}{(label or 'group').lstrip('@')}"
    return f"<{ZWSP}!{name}{'|' + label if label else ''}>"


def defuse_pings(text: str) -> str:
    """`<!channel>`, `<!here>`, `<!everyone>`, `<!subteam^…>` and bare `@here` made inert.

    Idempotent, so it is safe to apply at every place text leaves for Slack.
    """
    if "<!" not in text and "@" not in text:
        return text
    text = _SPECIAL.sub(_special, text)
    text = _OPEN_SPECIAL.sub("<" + ZWSP, text)  # an unclosed `<!` too
    return _BARE_PING.sub("@" + ZWSP, text)


class PingGuard:
    """`defuse_pings` for a stream of deltas: a ping split across two deltas is caught too."""

    def __init__(self) -> None:
        self.held = ""

    def feed(self, delta: str) -> str:
        text = self.held + delta
        tail = _PING_TAIL.search(text)
        if tail is not None and _may_become_ping(tail.group(0)):
            self.held = text[tail.start() :]
            text = text[: tail.start()]
        else:
            self.held = ""
        return defuse_pings(text)

    def flush(self) -> str:
        text, self.held = self.held, ""
        return defuse_pings(text)


def _may_become_ping(tail: str) -> bool:
    if tail.startswith("<"):
        return True
    word = tail[1:].lower()
    return any(w.startswith(word) for w in _PING_WORDS)


def _escape(text: str) -> str:
    """Escape `&`, `<`, `>` the way Slack requires, keeping Slack tokens and quotes."""
    out: list[str] = []
    last = 0
    for match in _SLACK_TOKEN.finditer(text):
        out.append(_escape_plain(text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_escape_plain(text[last:]))
    return "".join(out)


def _escape_plain(text: str) -> str:
    text = re.sub(r"&(?!(?:amp|lt|gt);)", "&amp;", text)
    text = text.replace("<", "&lt;")
    # A `>` opening a line is a block quote in both dialects; keep it.
    return re.sub(r"(?<!^)(?<!\n)>", "&gt;", text)


def _inline(text: str) -> str:
    """Convert one run of prose (no code) from markdown to mrkdwn."""
    text = _escape(text)
    text = _IMAGE.sub(lambda m: f"<{m.group(2)}|{m.group(1) or m.group(2)}>", text)
    text = _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", text)
    text = _HEADING.sub(lambda m: f"{_BOLD_MARK}{m.group(1).replace('**', '')}{_BOLD_MARK}", text)
    text = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(2)}{_BOLD_MARK}", text)
    text = _ITALIC.sub(lambda m: f"_{m.group(1)}_", text)
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    return text.replace(_BOLD_MARK, "*")


def to_mrkdwn(markdown: str) -> str:
    """Model markdown -> Slack mrkdwn; code (fenced and inline) is left untouched."""
    out: list[str] = []
    for i, part in enumerate(_FENCE.split(markdown)):
        if i % 2 == 1:
            out.append(part)
            continue
        for j, piece in enumerate(_INLINE_CODE.split(part)):
            out.append(piece if j % 2 == 1 else _inline(piece))
    return "".join(out)


# --- splitting ----------------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    """Marker between two messages in `MessageSplitter.feed`'s output."""


BREAK = Break()


class MessageSplitter:
    """Cuts streamed text into Slack-sized messages; see the module docstring.

    `feed(delta)` returns the text to append to the current message, with `BREAK`
    wherever a new message must begin. Only whole lines decide fence state, so a fence
    marker split across two deltas is still recognised.
    """

    def __init__(self, soft: int = SOFT_LIMIT, hard: int = HARD_LIMIT) -> None:
        self.soft = soft
        self.hard = hard
        self.current = 0
        self.line = ""
        self.fence: str | None = None

    def feed(self, text: str) -> list[str | Break]:
        out: list[str | Break] = []
        for piece in re.split(r"(?<=\n)", text):
            if piece:
                self._piece(piece, out)
        return out

    def _piece(self, piece: str, out: list[str | Break]) -> None:
        if self.current >= self.soft and not self.line:
            self._cut(out, mid_line=False)
        while self.current + len(piece) > self.hard:
            room = max(1, self.hard - self.current - 4)
            head = piece[:room]
            space = head.rfind(" ")
            if space > room // 2:
                head = head[: space + 1]
            self._emit(head, out)
            piece = piece[len(head) :]
            self._cut(out, mid_line=True)
        self._emit(piece, out)

    def _emit(self, text: str, out: list[str | Break]) -> None:
        if not text:
            return
        out.append(text)
        self.current += len(text)
        self.line += text
        if self.line.endswith("\n"):
            stripped = self.line.strip()
            if stripped.startswith("```"):
                self.fence = None if self.fence is not None else stripped
            self.line = ""

    def _cut(self, out: list[str | Break], *, mid_line: bool) -> None:
        fence = self.fence
        if fence is not None:
            out.append("\n```" if mid_line else "```")
        out.append(BREAK)
        self.current = 0
        if fence is not None:
            out.append(fence + "\n")
            self.current = len(fence) + 1
        if mid_line:
            self.line = ""


def split_message(text: str, soft: int = SOFT_LIMIT, hard: int = HARD_LIMIT) -> list[str]:
    """Split a whole text the same way streaming would."""
    parts = [""]
    for item in MessageSplitter(soft, hard).feed(text):
        if isinstance(item, Break):
            parts.append("")
        else:
            parts[-1] += item
    return [p for p in parts if p.strip()] or [""]


# --- footer -------------------------------------------------------------------------


_WEB_LINK = re.compile(r"(?:https?|mailto):[^<>|\s]+\Z")


def sources_line(answer: Answer) -> str | None:
    """`Sources: [1] <link|title> …`; only web links become links (a "link" such as
    `!channel` would otherwise be a ping), and titles are escaped and defused."""
    if not answer.citations:
        return None
    links = []
    for c in answer.citations:
        title = c.title.replace("|", "/").replace(">", "").replace("<", "") or c.link
        title = defuse_pings(_escape_plain(title))
        if _WEB_LINK.match(c.link):
            links.append(f"[{c.index}] <{c.link}|{title}>")
        elif c.link and c.link != c.title:
            links.append(f"[{c.index}] {title} ({defuse_pings(_escape_plain(c.link))})")
        else:
            links.append(f"[{c.index}] {title}")
    return "Sources: " + "  ".join(links)


def context_line(answer: Answer) -> str:
    usage = answer.usage
    tokens = f"{usage.total_tokens:,} tokens ({usage.prompt_tokens:,} in, {usage.completion_tokens:,} out)"
    if usage.estimated:
        tokens += ", estimated"
    return defuse_pings(f"{answer.model} · {tokens}{tools_used(answer)}")


def tools_used(answer: Answer) -> str:
    """` · tools used: a, b` (each tool once, in the order first used), or ""."""
    names = list(dict.fromkeys(str(call.get("tool", "")) for call in answer.tool_calls))
    return f" · tools used: {', '.join(_escape_plain(n) for n in names)}" if names else ""


def warning_line(answer: Answer) -> str | None:
    """One line naming why the answer is flagged (mrkdwn, escaped); None when it is not.

    An honest "no answer found" says so, not that the answer is unreliable.
    """
    if not (answer.flagged or answer.no_answer):
        return None
    reason = answer.reasons[0].strip().rstrip(".") if answer.reasons else ""
    if answer.no_answer:
        line = "🔎 I found no source for this"
        line += f" ({reason})." if reason else "."
    else:
        line = "⚠️ I'm not sure about this answer"
        line += f": {reason}." if reason else "."
    return _escape(defuse_pings(line))


def footer_text(answer: Answer) -> str:
    """The footer as mrkdwn lines, for messages sent as plain text."""
    lines = []
    warning = warning_line(answer)
    if warning:
        lines.append(warning)
    sources = sources_line(answer)
    if sources:
        lines.append(sources)
    lines.extend(f"⚠️ {_escape(defuse_pings(n))}" for n in answer.notices)
    lines.append(f"_{context_line(answer)}_")
    return "\n".join(lines)


def footer_blocks(answer: Answer) -> list[dict[str, Any]]:
    """The footer as Block Kit: sources, notices, a context line and feedback buttons."""
    blocks: list[dict[str, Any]] = []
    warning = warning_line(answer)
    if warning:
        blocks.append(
            {
                "type": "context",
                "block_id": "candor_warning",
                "elements": [{"type": "mrkdwn", "text": warning}],
            }
        )
    sources = sources_line(answer)
    if sources:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": sources}})
    for notice in answer.notices:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"⚠️ {_escape(defuse_pings(notice))}"}],
            }
        )
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context_line(answer)}]}
    )
    if (ref := answer.ref) is not None:
        elements = [_button("👍 Helpful", f"up:{ref}"), _button("👎 Not helpful", f"down:{ref}")]
        if answer.flagged or answer.no_answer:
            elements.append(ask_human_button(ref))
        blocks.append({"type": "actions", "block_id": "candor_feedback", "elements": elements})
    return blocks


def ask_human_button(ref: str) -> dict[str, Any]:
    """`ref`: the answer, as `Answer.ref` names it."""
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": "🙋 Ask a human", "emoji": True},
        "action_id": ASK_HUMAN_ACTION,
        "value": ref,
    }


# --- review ------------------------------------------------------------------------

_KIND_HEADINGS = {
    "flagged": "Flagged answer",
    "thumbs_down": "👎 on an answer",
    "ask_human": "Someone asked for a human",
}
#: Longest question / answer quoted in a review message (a section holds 3,000).
REVIEW_QUOTE_CHARS = 1400


def _quote(text: str, limit: int = REVIEW_QUOTE_CHARS) -> str:
    text = text.strip() or "(empty)"
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return "\n".join("> " + line for line in _escape_plain(defuse_pings(text)).split("\n"))


def review_text(item: ReviewItem) -> str:
    """The plain-text fallback (and notification text) of a review message."""
    heading = _KIND_HEADINGS.get(item.kind, "Answer to review")
    return defuse_pings(f"{heading} in <#{item.channel_id}>: {item.question[:200]}")


def review_blocks(
    item: ReviewItem, permalink: str | None, *, asked_by: str | None = None
) -> list[dict[str, Any]]:
    """What reviewers see: question, answer, reasons, scores, a permalink, and buttons
    while the item is open (a line saying who resolved or corrected it after)."""
    heading = _KIND_HEADINGS.get(item.kind, "Answer to review")
    facts = [f"*{heading}* in <#{item.channel_id}>"]
    if item.raised_by:
        facts.append(f"raised by <@{item.raised_by}>")
    if item.confidence is not None:
        facts.append(f"confidence {item.confidence:.2f}")
    if permalink and _WEB_LINK.match(permalink):
        facts.append(f"<{permalink}|open the thread>")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": " · ".join(facts)}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*Question*\n" + _quote(item.question)},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Answer*\n" + _quote(item.answer)}},
    ]
    details: list[str] = []
    if item.reasons:
        details.append(
            "*Why:* " + "; ".join(_escape_plain(defuse_pings(r)) for r in item.reasons[:5])
        )
    if item.hits:
        scores = ", ".join(
            f"[{h.get('index', '?')}] {_escape_plain(defuse_pings(str(h.get('title') or '')))[:60]}"
            f" {float(h.get('score') or 0.0):.2f}"
            for h in item.hits[:5]
        )
        details.append(f"*Sources and scores:* {scores}")
    else:
        details.append("*Sources and scores:* none retrieved")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in details]})
    if item.is_open:
        blocks.append(
            {
                "type": "actions",
                "block_id": "candor_review",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "✅ Mark resolved", "emoji": True},
                        "action_id": REVIEW_RESOLVE_ACTION,
                        "value": str(item.review_id),
                    },
                    {
                        "type": "button",
                        "text": {
                            "type": "plain_text",
                            "text": "✏️ Write a correction",
                            "emoji": True,
                        },
                        "action_id": REVIEW_CORRECT_ACTION,
                        "value": str(item.review_id),
                        "style": "primary",
                    },
                ],
            }
        )
    else:
        done = "✏️ Corrected" if item.status == "corrected" else "✅ Resolved"
        who = f" by <@{item.reviewer_id}>" if item.reviewer_id else ""
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{done}{who}."}]}
        )
    return blocks


def correction_text(reviewer_id: str, correction: str, *, learned: bool) -> str:
    """The correction as posted in the original thread (mrkdwn, no live pings)."""
    text = f"✏️ *Correction from <@{reviewer_id}>:*\n{to_mrkdwn(defuse_pings(correction))}"
    if learned:
        text += "\n_Added to this channel's knowledge, so the next answer can cite it._"
    return text


def correction_modal(item: ReviewItem) -> dict[str, Any]:
    """The modal a reviewer writes the correct answer in."""
    question = item.question.strip() or "(question not recorded)"
    if len(question) > 500:
        question = question[:499] + "…"
    return {
        "type": "modal",
        "callback_id": CORRECTION_MODAL,
        "private_metadata": str(item.review_id),
        "title": {"type": "plain_text", "text": "Write a correction"},
        "submit": {"type": "plain_text", "text": "Post correction"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Question*\n" + _quote(question, 500),
                },
            },
            {
                "type": "input",
                "block_id": CORRECTION_BLOCK,
                "label": {"type": "plain_text", "text": "The correct answer"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": CORRECTION_INPUT,
                    "multiline": True,
                    "max_length": CORRECTION_MAX_CHARS,
                },
            },
            {
                "type": "input",
                "block_id": KNOWLEDGE_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "Knowledge"},
                "element": {
                    "type": "checkboxes",
                    "action_id": KNOWLEDGE_INPUT,
                    "options": [
                        {
                            "text": {
                                "type": "plain_text",
                                "text": "Add to this channel's knowledge",
                            },
                            "value": "add",
                        }
                    ],
                },
            },
        ],
    }


def _button(label: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "action_id": f"{FEEDBACK_ACTION}_{value.split(':', 1)[0]}",
        "value": value,
    }


def megabytes(size: int) -> str:
    value = f"{size / (1024 * 1024):.1f}".rstrip("0").rstrip(".")
    return f"{value} MB"
