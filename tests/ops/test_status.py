"""`etl status` at 80 columns: every line fits and no cell is cut — each cell's full text is in its column."""

from __future__ import annotations

import itertools
import re

import pytest
from rich.cells import cell_len
from rich.console import Console

from etl.status import detail_of, rows_of, status_table

ROWS = [
    {"object_id": "a" * 20, "dataset": "customers", "stage": "transformed", "source_key": "customers/2024/batch-1.csv",
     "rows_in": 63, "rows_good": 60, "rows_quarantined": 3, "chunk_count": 4, "chunks_done": ["0", "1", "2", "3"]},
    {"object_id": "b" * 20, "dataset": None, "stage": "rejected", "source_key": "x" * 300 + "/ünïcødé 日本語.csv",
     "reason": "the raw copy key would be 1,048 bytes; S3 allows 1,024 (shorten the landing key by 24 bytes)"},
    {"object_id": "c" * 20, "dataset": "orders", "stage": "failed", "permanent": True, "attempts": 1,
     "source_key": "orders/png.jsonl", "reason": "TransformError: object ccc: is not UTF-8 text (invalid byte 0x89 "
                                                 "at offset 0)"},
    {"object_id": "d" * 20, "dataset": "orders", "stage": "failed", "attempts": 3, "source_key": "orders/flaky.jsonl",
     "reason": "ConnectionError: " + "reset " * 40},
    {"object_id": "e" * 20, "dataset": "customers", "stage": "ingested", "source_key": "customers/new.csv"},
]


def render(wide: bool, width: int) -> str:
    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    console.print(status_table(ROWS, title="objects in local", wide=wide))
    return console.export_text()


def cells_by_column(text: str) -> list[list[str]]:
    """Each body row's cells, the text of a cell's lines joined without whitespace (folding splits anywhere)."""
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("┏"))
    bounds = [m.start() for m in re.finditer("[┃│]", lines[head + 1])]
    rows: list[list[str]] = []
    current: list[str] | None = None
    for ln in lines[head + 3 :]:
        if ln.startswith(("├", "└")):
            if current is not None:
                rows.append(current)
            current = None
            continue
        current = current or [""] * (len(bounds) - 1)
        for i, (a, b) in enumerate(itertools.pairwise(bounds)):
            current[i] += re.sub(r"\s+", "", ln[a + 1 : b])
    return rows


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


@pytest.mark.parametrize("wide", [False, True])
def test_every_line_fits_and_no_cell_is_cut(wide: bool) -> None:
    width = 80 if not wide else 160
    text = render(wide, width)
    assert all(cell_len(line) <= width for line in text.splitlines())
    assert "…" not in text
    rows = cells_by_column(text)
    assert len(rows) == len(ROWS)
    for row, cells in zip(ROWS, rows, strict=True):
        if wide:
            expected = [row["object_id"], row.get("dataset") or "-", row.get("source_key", "")]
        else:
            expected = [row["object_id"][:12], row.get("dataset") or "-", row["stage"], rows_of(row)]
        for want in expected:
            assert squash(want) in "".join(cells), f"{want!r} cut in {cells!r}"
        assert squash(detail_of(row)) in squash("".join(cells)), "the reason is shown whole"
        if not wide:
            assert cells[-1].startswith(squash(row.get("source_key", ""))), "key and detail in the last column"


def test_default_layout_stays_readable_when_narrow() -> None:
    text = render(False, 80)
    header = next(ln for ln in text.splitlines() if ln.startswith("┃"))
    assert "source key" in header and "rows" in header
    details = [cells[-1] for cells in cells_by_column(text)]
    assert "permanent,notretried" in details[2], "a permanent failure says there is nothing to redrive"
    assert "`etldlqredrive`oncefixed" in details[3], "a dead-lettered object says what to do"
