"""Raw text to rows, dispatched on the contract's input format (csv or jsonl).

Parsing only splits text into fields; casting and checks happen in validate.py so that both
formats share one set of rules.
"""

from __future__ import annotations

from contracts.datasets import Dataset
from services.transform.lines import Text, as_bytes
from services.transform.parse_csv import parse_csv
from services.transform.parse_jsonl import parse_jsonl
from services.transform.rows import Parsed


def parse(
    buf: Text, dataset: Dataset, *, object_id: str, first_line: int, at_start: bool, how: str | None = None
) -> Parsed:
    """Split validated UTF-8 text into rows; `at_start` says the text begins the object (CSV header).

    `Parsed.segments` may be a generator (CSV: a block at a time) that raises `rows.Reread` once it
    finds the text must be read another way; parse again with `how=` the one it names.
    """
    if dataset.format.type == "jsonl":
        return parse_jsonl(as_bytes(buf), dataset, first_line=first_line)  # read as bytes (core.py)
    return parse_csv(buf, dataset, object_id=object_id, first_line=first_line, with_header=at_start, how=how)
