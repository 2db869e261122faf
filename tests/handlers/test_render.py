"""Markdown to mrkdwn, splitting long answers, and the footer: pure functions."""

from __future__ import annotations

from bot.conversation import Answer, Citation
from bot.llm import Usage
from handlers.render import footer_blocks, footer_text, split_message, to_mrkdwn


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
