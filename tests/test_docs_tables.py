"""Every Markdown table in README.md and docs/ renders as one table: a blank line or a missing separator row inside
a table turns the rows after it into literal pipes on GitHub."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def cell_count(row: str) -> int:
    return len(re.split(r"(?<!\\)\|", row.strip().strip("|")))


def table_problems(text: str) -> list[str]:
    """Rows outside a table (no header and separator above them) and rows whose cell count differs from the header."""
    problems, in_code, header_cells = [], False, None
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        is_row = not in_code and line.lstrip().startswith("|")
        if not is_row:
            header_cells = None
            continue
        if header_cells is None:
            following = lines[number] if number < len(lines) else ""
            if not SEPARATOR.match(following):
                problems.append(f"line {number}: a table row with no header and separator above it: {line[:60]}")
                continue
            header_cells = cell_count(line)
        elif not SEPARATOR.match(line) and cell_count(line) != header_cells:
            problems.append(f"line {number}: {cell_count(line)} cells, the header has {header_cells}: {line[:60]}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_table_is_one_block_with_its_header(page):
    assert table_problems(page.read_text()) == []


def test_a_blank_line_inside_a_table_is_caught():
    split = "| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n"
    assert table_problems(split) == ["line 5: a table row with no header and separator above it: | 3 | 4 |"]
    assert table_problems("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n") == [
        "line 3: 3 cells, the header has 2: | 1 | 2 | 3 |"
    ]
