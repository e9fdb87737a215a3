"""Fingerprints of erased rows: find a copy of an erased row even where its subject id is not.

When a worker removes a row it also records an HMAC (the run's salt) of the row's *other* personal
values — every personal column of the contract except the subject columns (name, email, phone …),
in contract order, nulls included. Verification then hashes the same columns of every row of the
lake copies it scans; a match is a survivor of an erased row (copied, or with its id changed).

What counts, and why: one shared value is not a survivor — another customer may live in the same
country or have the same name — so single values are never matched across the lake. The whole
combination of a row's personal values is what identifies the person. A row whose other personal
values are all null has no fingerprint (it identifies no one beyond its subject id, which is
matched directly). The fingerprints are kept only in the run's workspace and deleted with it.
Inside the files erasure rewrote, single values *are* checked (structure.py): there, every value
must belong to a surviving row of the same file.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from contracts.datasets import Dataset

#: hex characters kept of each HMAC-SHA256 (128 bits: no accidental collision in any lake)
DIGEST_HEX = 32
_NULL = "\x00"
_SEP = "\x1f"


def other_personal_columns(dataset: Dataset) -> list[str]:
    """The personal columns that are not subject columns: what a fingerprint covers."""
    return [c for c in dataset.personal_columns if c not in dataset.subject_columns]


def fingerprints(table: pa.Table, columns: Sequence[str], salt: bytes) -> list[str | None]:
    """Per row, the HMAC of its values in `columns` (None when every one is null or a column is absent)."""
    if not columns or any(c not in table.column_names for c in columns) or table.num_rows == 0:
        return [None] * table.num_rows
    parts = []
    any_value: pa.ChunkedArray | None = None
    for c in columns:
        col = table[c]
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        present = pc.is_valid(col)
        any_value = present if any_value is None else pc.or_(any_value, present)
        parts.append(pc.fill_null(pc.cast(col, pa.string()), _NULL))
    joined = pc.binary_join_element_wise(*parts, _SEP)
    assert any_value is not None  # columns is not empty
    out: list[str | None] = []
    for text, ok in zip(joined.to_pylist(), any_value.to_pylist(), strict=True):
        out.append(hmac.new(salt, text.encode(), hashlib.sha256).hexdigest()[:DIGEST_HEX] if ok else None)
    return out


def matches(table: pa.Table, columns: Sequence[str], wanted: set[str], salt: bytes) -> int:
    """Rows of `table` whose fingerprint is one of `wanted`."""
    if not wanted:
        return 0
    return sum(1 for f in fingerprints(table, columns, salt) if f is not None and f in wanted)
