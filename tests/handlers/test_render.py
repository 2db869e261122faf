"""Markdown to mrkdwn, splitting long answers, and the footer: pure functions."""

from __future__ import annotations

import json
import re

import pytest

from bot.conversation import Answer, Citation
from bot.llm import Usage
from handlers.render import (
    PingGuard,
    defuse_pings,
    footer_blocks,
    footer_text,
    split_message,
    to_mrkdwn,
)


def test_bold_links_headings_and_bullets_become_mrkdwn() -> None:
    md = "# Title\nSome **bold**, *italic*, ~~gone~~ and [docs](https://d.test/x).\n- one\n* two"
    assert to_mrkdwn(md) == (
        "*Title*\nSome *bold*, _italic_, ~gone~ and <https://d.test/x|docs>.\n• one\n• two"
    )


def test_code_is_left_untouched_and_specials_escaped_outside_it() -> None:
    md = "Use `a **b** c` and 1 < 2 & 3 > 2, ping <@U1>.\n```\nx = **y** < z\n```\n> quoted"
    assert to_mrkdwn(md) == (
        "Use `a **b** c` and 1 &lt; 2 &amp; 3 &gt; 2, ping <@U1>.\n```\nx = **y** < z\n```\n> quoted"
    )


def test_split_keeps_parts_short_and_code_fences_balanced() -> None:
    text = "intro\n\n```sql\n" + "SELECT 1;\n" * 900 + "```\nafter"
    parts = split_message(text, soft=1000, hard=1200)

    assert len(parts) > 5
    assert all(len(p) <= 1200 for p in parts)
    assert all(p.count("```") % 2 == 0 for p in parts)
    assert parts[1].startswith("```sql\n")
    assert parts[-1].endswith("after")


def test_split_cuts_a_very_long_line_at_a_space() -> None:
    parts = split_message("word " * 1000, soft=1000, hard=1200)
    assert all(len(p) <= 1200 for p in parts)
    assert "".join(parts) == "word " * 1000


def test_short_text_is_one_part() -> None:
    assert split_message("hello") == ["hello"]


def test_footer_has_sources_notices_and_context() -> None:
    answer = Answer(
        text="x",
        model="gpt-4o",
        usage=Usage(prompt_tokens=1200, completion_tokens=34),
        timings={},
        citations=[Citation(1, "Deploy guide", "https://wiki.test/deploy", "wiki")],
        notices=["Images were skipped."],
        answer_id=5,
    )
    text = footer_text(answer)
    assert "Sources: [1] <https://wiki.test/deploy|Deploy guide>" in text
    assert "⚠️ Images were skipped." in text
    assert "_gpt-4o · 1,234 tokens (1,200 in, 34 out)_" in text
    blocks = footer_blocks(answer)
    assert blocks[0]["text"]["text"] == "Sources: [1] <https://wiki.test/deploy|Deploy guide>"
    assert blocks[-1]["type"] == "actions"
    assert [e["value"] for e in blocks[-1]["elements"]] == ["up:5", "down:5"]


# --- mass pings (issue 9, 2.11) -------------------------------------------------------

LIVE_PING = re.compile(r"<!|@(?:channel|here|everyone)\b", re.I)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("<!channel> look", "@channel look"),
        ("<!here|here> and <!everyone>", "@here and @everyone"),
        ("<!subteam^S123|@oncall> and <!subteam^S9>", "@oncall and @group"),
        (
            "plain @here, @Channel, @everyone; @heres stays",
            "plain @here, @Channel, @everyone; @heres stays",
        ),
        ("unclosed <!channel", "unclosed <!channel"),
        ("<!date^1392734382^{date}|Feb 18>", "<!date^1392734382^{date}|Feb 18>"),
        ("<@U123> and <#C1> stay", "<@U123> and <#C1> stay"),
    ],
)
def test_mass_pings_are_defused_but_still_read_the_same(text: str, shown: str) -> None:
    defused = defuse_pings(text)
    assert not LIVE_PING.search(defused)
    assert defused.replace("\u200b", "") == shown
    assert defuse_pings(defused) == defused  # safe to apply at every exit
    assert not LIVE_PING.search(to_mrkdwn(defused))


def test_to_mrkdwn_never_keeps_a_special_as_a_live_token() -> None:
    assert to_mrkdwn("hi <!channel>") == "hi &lt;!channel&gt;"


def test_ping_guard_catches_pings_split_across_deltas() -> None:
    guard = PingGuard()
    pieces = ["a <", "!ever", "yone> b @", "ch", "annel c @e", "x", " <https://x.test|x>"]
    out = "".join(guard.feed(p) for p in pieces) + guard.flush()
    assert not LIVE_PING.search(out)
    assert out.replace("\u200b", "") == "a @everyone b @channel c @ex <https://x.test|x>"


def test_footer_titles_links_and_notices_never_ping() -> None:
    answer = Answer(
        text="x",
        model="gpt-4o",
        usage=Usage(prompt_tokens=1, completion_tokens=1),
        timings={},
        citations=[
            Citation(1, "<!here> Runbook @channel", "https://wiki.test/r", "wiki"),
            Citation(2, "Notes", "!channel", "wiki"),
        ],
        notices=["I skipped <!everyone>.png: it is too big."],
        answer_id=5,
    )
    text = footer_text(answer)
    blocks = json.dumps(footer_blocks(answer), ensure_ascii=False)
    assert not LIVE_PING.search(text) and not LIVE_PING.search(blocks)
    assert "[1] <https://wiki.test/r|" in text
    assert "<!channel|" not in text and "[2] Notes" in text
