"""Raw text to rows, dispatched on the contract's input format (csv or jsonl).

Parsing only splits text into fields; casting and checks happen in validate.py so that both
formats share one set of rules.
"""

from __future__ import annotations

from contracts.datasets import Dataset
from services.transform.lines import as_bytes
from services.transform.parse_csv import parse_csv
from services.transform.parse_jsonl import parse_jsonl
from services.transform.pieces import Pieces
from services.transform.rows import Parsed


def parse(
    text: Pieces, dataset: Dataset, *, object_id: str, first_line: int, at_start: bool, how: str | None = None
) -> Parsed:
    """Split text into rows; `at_start` says the text begins the object (CSV header). The text's scans
    (UTF-8, NUL: `Pieces.scanned`) are the caller's to await before any row leaves.

    `Parsed.segments` may be a generator (CSV: a block at a time) that raises `rows.Reread` once it
    finds the text must be read another way, and so may this call; parse again with `how=` the one it names.
    """
    if dataset.format.type == "jsonl":
        return parse_jsonl(as_bytes(text.whole()), dataset, first_line=first_line)  # read whole (decode.py)
    return parse_csv(text, dataset, object_id=object_id, first_line=first_line, with_header=at_start, how=how)
