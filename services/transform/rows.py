"""Rows as readers hand them over: segments of fields, rejects, and value-free reason codes.

Parsing only splits text into fields. A row that cannot be split (wrong column count, invalid
JSON, not an object, nested value) is a `Reject`; everything else is a row of a `Segment`, whose
values are checked and cast later (validate.py), so both formats share one set of rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

# Reason codes: a value-free classification of quarantine reasons, safe for metrics and events.
COLUMN_COUNT = "column_count"
INVALID_JSON = "invalid_json"
NOT_OBJECT = "not_object"
NOT_SCALAR = "not_scalar"
DUPLICATE_KEY = "duplicate_key"
BAD_VALUE = "bad_value"
MISSING_VALUE = "missing_value"
BAD_PARTITION = "bad_partition"
#: a CSV record whose quoted value spans lines, in a contract that does not allow newlines in values
SPANS_LINES = "spans_lines"
#: a CSV record whose quoted value is never closed (the rest of the text is that one record)
UNCLOSED_QUOTE = "unclosed_quote"


@dataclass(frozen=True)
class Segment:
    """Rows read together: the contract's columns (strings, or already typed by a fast reader) and line numbers."""

    table: pa.Table
    lines: np.ndarray

    def __post_init__(self) -> None:
        if self.table.num_rows != len(self.lines):
            raise ValueError(f"{self.table.num_rows} rows but {len(self.lines)} line numbers")


@dataclass(frozen=True)
class Reject:
    """A row that could not be split into the contract's fields; `raw` is its text."""

    line: int
    code: str
    reason: str
    raw: str | None
    values: dict[str, str | None] | None = None


class Reread(Exception):
    """A reader found, after handing over rows, that the text must be read again another way.

    Streaming readers hand over rows a block at a time (the caller checks and frees each block) and
    learn only at the end whether rows matched lines. The caller drops what it made of the rows and
    parses again with `how`.
    """

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


@dataclass
class Parsed:
    #: a list, or a generator of a streaming reader (which may raise `Reread`, and fills `rejects` as it goes)
    segments: list[Segment] | Iterator[Segment] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        """Rows of a parse whose segments are a list (a generator's are counted as they come)."""
        assert isinstance(self.segments, list)
        return sum(s.table.num_rows for s in self.segments) + len(self.rejects)


def shorten(value: str, limit: int = 60) -> str:
    """A value quoted in a reason: long values are cut so reasons stay readable."""
    return value if len(value) <= limit else value[: limit - 1] + "…"
