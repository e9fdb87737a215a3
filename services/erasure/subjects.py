"""Subject ids as a request carries them, and as typed values of each dataset's subject columns.

Ids arrive as strings. A subject column is typed (customer_id is int64), so each id is parsed per
column type; an id that cannot be a value of a column (`abc` for an int64) simply cannot match
there. An id that fits no subject column in scope is refused at intake, by index, never echoed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from contracts.datasets import Dataset
from services.erasure.hashing import subject_hash

MAX_ID_CHARS = 256
_INT = re.compile(r"[+-]?\d+")
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_ARROW = {"int32": pa.int32(), "int64": pa.int64(), "string": pa.string()}
SUPPORTED_TYPES = tuple(_ARROW)


def id_problem(raw: str) -> str | None:
    """Why a string cannot be a subject id at all (value-free wording), or None."""
    s = raw.strip()
    if not s:
        return "is empty"
    if len(s) > MAX_ID_CHARS:
        return f"is longer than {MAX_ID_CHARS} characters"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in s):
        return "contains control characters"
    return None


def typed_value(raw: str, column_type: str) -> int | str | None:
    """The id as a value of a column of this type, or None when it cannot be one."""
    s = raw.strip()
    if column_type in _INT_RANGES:
        if not _INT.fullmatch(s):
            return None
        v = int(s)
        lo, hi = _INT_RANGES[column_type]
        return v if lo <= v <= hi else None
    if column_type == "string":
        return s
    raise ValueError(f"subject columns of type {column_type!r} are not supported (supported: {SUPPORTED_TYPES})")


def fits(raw: str, dataset: Dataset) -> bool:
    return any(typed_value(raw, dataset.column(c).type) is not None for c in dataset.subject_columns)


@dataclass(frozen=True)
class ColumnValues:
    """Typed subject values of one column and, for each, the index of the subject it came from."""

    column: str
    values: pa.Array
    subject_index: tuple[int, ...]


@dataclass(frozen=True)
class Subjects:
    """The subject ids of one run with their salted hashes. Never log `ids`; log `hashes`."""

    ids: tuple[str, ...]
    hashes: tuple[str, ...]

    @classmethod
    def of(cls, ids: Sequence[str], salt: bytes) -> Subjects:
        unique = tuple(dict.fromkeys(i.strip() for i in ids))
        return cls(unique, tuple(subject_hash(i, salt) for i in unique))

    def __repr__(self) -> str:  # a stray debug print must not leak ids
        return f"Subjects(n={len(self.ids)}, hashes={[h[-12:] for h in self.hashes]})"

    __str__ = __repr__

    def columns(self, dataset: Dataset) -> list[ColumnValues]:
        """Per subject column of the dataset, the typed values to look for (columns with none left out)."""
        out = []
        for name in dataset.subject_columns:
            ctype = dataset.column(name).type
            pairs = [(v, i) for i, raw in enumerate(self.ids) if (v := typed_value(raw, ctype)) is not None]
            if pairs:
                out.append(ColumnValues(name, pa.array([v for v, _ in pairs], _ARROW[ctype]),
                                        tuple(i for _, i in pairs)))
        return out

    def subset(self, indexes: Sequence[int]) -> Subjects:
        return Subjects(tuple(self.ids[i] for i in indexes), tuple(self.hashes[i] for i in indexes))
