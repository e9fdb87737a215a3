"""Helpers shared by the transform tests (small contracts, result accessors); this module holds no tests."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from contracts.datasets import Dataset, parse_dataset
from services.transform.chunks import ByteRange
from services.transform.core import TransformResult, transform

TYPED_TOML = """
name = "typed"
sort_key = ["id"]
[format]
type = "{fmt}"
embedded_newlines = {embedded}
[[partitioning]]
name = "region_key"
source = "region"
[[columns]]
name = "id"
type = "int64"
nullable = false
[[columns]]
name = "small"
type = "int32"
[[columns]]
name = "price"
type = "decimal(5,2)"
[[columns]]
name = "ratio"
type = "float64"
[[columns]]
name = "flag"
type = "bool"
[[columns]]
name = "day"
type = "date"
[[columns]]
name = "at"
type = "timestamp"
[[columns]]
name = "note"
type = "string"
[[columns]]
name = "region"
type = "string"
nullable = false
"""
TYPED_COLUMNS = ("id", "small", "price", "ratio", "flag", "day", "at", "note", "region")


def typed_dataset(fmt: str = "csv", embedded: bool = False) -> Dataset:
    """Every contract type, an identity partition on `region`, sorted by `id`."""
    return parse_dataset(TYPED_TOML.format(fmt=fmt, embedded=str(embedded).lower()), "typed.toml")


def run(dataset: Dataset, data: Any, chunk: ByteRange | None = None, object_id: str = "obj") -> TransformResult:
    """transform() plus the invariant every result must hold.

    CSV given as bytes is transformed a second time from a pyarrow file, as the function reads S3
    objects: the text is then read in pieces into pyarrow Buffers (decode.open_text, pieces.py), and
    both results must be the same, rows, reasons and errors alike.
    """
    try:
        result = transform(dataset, data, object_id=object_id, source=f"s3://raw/{object_id}", chunk=chunk)
    except Exception as exc:
        if _pooled_too(dataset, data):
            with pytest.raises(type(exc)) as again:
                transform(dataset, pa.BufferReader(data), object_id=object_id, source=f"s3://raw/{object_id}",
                          chunk=chunk)
            assert str(again.value) == str(exc)
        raise
    assert result.rows_in == result.rows_good + result.rows_quarantined
    assert result.rows_good == sum(p.table.num_rows for p in result.partitions)
    assert result.rows_quarantined == result.quarantine.num_rows
    assert sum(result.quarantine_reasons.values()) == result.rows_quarantined
    if _pooled_too(dataset, data):
        pooled = transform(dataset, pa.BufferReader(data), object_id=object_id, source=f"s3://raw/{object_id}",
                           chunk=chunk)
        assert [(p.values, p.table.to_pylist()) for p in pooled.partitions] == [
            (p.values, p.table.to_pylist()) for p in result.partitions]
        assert pooled.quarantine.equals(result.quarantine)
        assert (pooled.rows_in, pooled.quarantine_reasons) == (result.rows_in, result.quarantine_reasons)
    return result


def _pooled_too(dataset: Dataset, data: Any) -> bool:
    return isinstance(data, bytes) and dataset.format.type == "csv" and not dataset.format.embedded_newlines


def good_rows(result: TransformResult) -> list[dict[str, Any]]:
    """All good rows (lineage included) ordered by source line."""
    rows = [row for p in result.partitions for row in p.table.to_pylist()]
    return sorted(rows, key=lambda r: r["_source_line"])


def reasons(result: TransformResult) -> dict[int, str]:
    """{source line: reason} of the quarantined rows."""
    return {r["_source_line"]: r["_reason"] for r in result.quarantine.to_pylist()}


def by_partition(result: TransformResult) -> dict[str, list[dict[str, Any]]]:
    return {p.path: p.table.to_pylist() for p in result.partitions}


def plain(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns back to their value type (for comparisons)."""
    return pa.table(
        {
            f.name: table[f.name].cast(f.type.value_type) if pa.types.is_dictionary(f.type) else table[f.name]
            for f in table.schema
        }
    )


def csv_text(rows: list[list[str]], header: tuple[str, ...] = TYPED_COLUMNS, newline: str = "\n") -> bytes:
    lines = [",".join(header)] + [",".join(r) for r in rows]
    return (newline.join(lines) + newline).encode()


def typed_row(n: int, **values: str) -> list[str]:
    """A valid row of the typed dataset, numbered n, with `values` overriding columns."""
    row = {"id": str(n), "small": str(n % 1000), "price": f"{n % 1000}.{n % 100:02d}", "ratio": "0.5",
           "flag": "true", "day": f"2024-0{1 + n % 9}-1{n % 10}", "at": "2024-03-07T12:30:00", "note": f"n{n}",
           "region": ("eu", "us", "apac")[n % 3]} | values
    return [row[c] for c in TYPED_COLUMNS]


def same(a: TransformResult, b: TransformResult) -> None:
    """Two transforms agree on rows, quarantine, reasons and partitions."""
    assert good_rows(a) == good_rows(b)
    assert a.quarantine.to_pylist() == b.quarantine.to_pylist()
    assert a.quarantine_reasons == b.quarantine_reasons
    assert [(p.path, p.table.num_rows) for p in a.partitions] == [(p.path, p.table.num_rows) for p in b.partitions]
