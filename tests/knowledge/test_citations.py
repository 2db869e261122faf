"""Numbered sources for the prompt, and reading back which ones the answer cited."""

from __future__ import annotations

from knowledge import Hit, cited_indices, format_sources


def hit(n: int, text: str = "body") -> Hit:
    return Hit(f"id{n}", text, f"s{n}", f"Title {n}", f"https://x/{n}", "workspace", 1.0)


def test_format_sources_numbers_hits_with_title_link_and_text() -> None:
    out = format_sources([hit(1, "alpha"), hit(2, "beta")])
    assert out == "[1] Title 1 (https://x/1)\nalpha\n\n[2] Title 2 (https://x/2)\nbeta"


def test_format_sources_truncates_long_text() -> None:
    out = format_sources([hit(1, "x" * 50)], max_chars_per_source=10)
    assert out.endswith("x" * 10 + "…")


def test_cited_indices_reads_single_grouped_and_adjacent_citations() -> None:
    answer = "Use the rollback [1]. Approval is not needed [2, 3][4]. See also [12]."
    assert cited_indices(answer) == {1, 2, 3, 4, 12}
    assert cited_indices(answer, max_index=3) == {1, 2, 3}
    assert cited_indices("no citations, [a] or [0] or [ ]") == set()
