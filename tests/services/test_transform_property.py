"""Property tests: generated CSV/JSONL with random bad rows reconcile, and good rows round-trip exactly.

Every generated row is either good (its typed values are known) or bad in a known way (its line is
known), so each example checks counts, which lines were quarantined, every good value, and the
Parquet round trip; the same inputs also check that the fast readers and the exact Python readers
agree, and that chunked processing equals whole-object processing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from unittest import mock

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.transform import parse_csv, parse_jsonl
from services.transform.chunks import plan_chunks
from services.transform.core import TransformResult
from services.transform.parquet import parquet_bytes
from tests.services.transform_helpers import TYPED_COLUMNS, good_rows, plain, reasons, run, typed_dataset

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\r\n"), min_size=1, max_size=12
)
values = st.fixed_dictionaries(
    {
        "id": st.integers(-(2**63), 2**63 - 1),
        "small": st.none() | st.integers(-(2**31), 2**31 - 1),
        "price": st.none() | st.decimals(min_value=Decimal("-999.99"), max_value=Decimal("999.99"), places=2),
        "ratio": st.none() | st.floats(allow_nan=False, allow_infinity=False, width=64),
        "flag": st.none() | st.booleans(),
        "day": st.none() | st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)),
        "at": st.none() | st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2100, 12, 31)),
        "note": st.none() | text,
        "region": st.sampled_from(["eu", "us", "apac"]),
    }
)
BAD_KINDS = ("bad_int", "bad_price", "bad_day", "missing_id", "shape")
rows = st.lists(st.one_of(values, st.sampled_from(BAD_KINDS)), max_size=40)


@dataclass
class Generated:
    data: bytes
    good: dict[int, dict[str, Any]] = field(default_factory=dict)  # line -> typed values
    bad: set[int] = field(default_factory=set)


def as_text(column: str, value: Any) -> str:
    """CSV text of a value as a producer would write it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def bad_row(kind: str) -> dict[str, Any]:
    row: dict[str, Any] = {"id": 1, "region": "eu"}
    if kind == "bad_int":
        row["small"] = "12a"
    elif kind == "bad_price":
        row["price"] = "1.234"
    elif kind == "bad_day":
        row["day"] = "2023-02-29"
    elif kind == "missing_id":
        row["id"] = None
    return row


def render_csv(items: list[Any], newline: str, blank_every: int, trailing: bool) -> Generated:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(TYPED_COLUMNS)
    gen, line = Generated(b""), 2
    for n, item in enumerate(items):
        if blank_every and n % blank_every == blank_every - 1:
            out.write(newline)
            line += 1
        if item == "shape":
            writer.writerow(["1", "2"])
        else:
            row = bad_row(item) if isinstance(item, str) else item
            writer.writerow([as_text(c, row.get(c)) for c in TYPED_COLUMNS])
        (gen.bad.add(line) if isinstance(item, str) else gen.good.__setitem__(line, item))
        line += 1
    body = out.getvalue()
    gen.data = (body if trailing else body[: -len(newline)]).encode()
    return gen


def json_value(value: Any, quote_numbers: bool) -> str:
    """JSON text of a value; numbers (decimals included, exactly) as numbers or as strings."""
    if isinstance(value, Decimal | float | int) and not isinstance(value, bool):
        return json.dumps(as_text("", value)) if quote_numbers else as_text("", value)
    if isinstance(value, dt.date):
        return json.dumps(value.isoformat())
    return json.dumps(value)


def render_jsonl(items: list[Any], newline: str, blank_every: int, quote_numbers: bool) -> Generated:
    lines, gen = [], Generated(b"")
    for n, item in enumerate(items):
        if blank_every and n % blank_every == blank_every - 1:
            lines.append("")
        if item == "shape":
            lines.append('{"id": 1, "region": "eu"')  # invalid JSON
        else:
            row = bad_row(item) if isinstance(item, str) else item
            lines.append(
                "{" + ", ".join(f"{json.dumps(c)}: {json_value(row.get(c), quote_numbers)}" for c in row) + "}"
            )
        (gen.bad.add(len(lines)) if isinstance(item, str) else gen.good.__setitem__(len(lines), item))
    gen.data = (newline.join(lines) + newline).encode()
    return gen


def check(result: TransformResult, gen: Generated) -> None:
    assert result.rows_in == len(gen.good) + len(gen.bad)
    assert set(reasons(result)) == gen.bad
    got = {row["_source_line"]: row for row in good_rows(result)}
    assert set(got) == set(gen.good)
    for line, expected in gen.good.items():
        assert {c: got[line][c] for c in TYPED_COLUMNS} == expected, line
    for part in result.partitions:  # Parquet round trip of every good row
        written = parquet_bytes(part.table, typed_dataset())
        assert pq.read_table(io.BytesIO(written)).equals(plain(part.table))


def same(a: TransformResult, b: TransformResult) -> None:
    assert good_rows(a) == good_rows(b)
    assert a.quarantine.to_pylist() == b.quarantine.to_pylist()


@SETTINGS
@given(rows, st.sampled_from(["\n", "\r\n"]), st.integers(0, 5), st.booleans())
def test_csv_counts_reconcile_and_good_rows_round_trip(
    items: list[Any], newline: str, blank: int, trailing: bool
) -> None:
    gen = render_csv(items, newline, blank, trailing)
    result = run(typed_dataset(), gen.data)
    check(result, gen)
    with mock.patch.object(parse_csv, "_read_fast", return_value=None):  # the exact Python reader agrees
        same(run(typed_dataset(), gen.data), result)


@SETTINGS
@given(rows, st.sampled_from(["\n", "\r\n"]), st.integers(0, 5), st.booleans())
def test_jsonl_counts_reconcile_and_good_rows_round_trip(
    items: list[Any], newline: str, blank: int, quote_numbers: bool
) -> None:
    gen = render_jsonl(items, newline, blank, quote_numbers)
    dataset = typed_dataset("jsonl")
    result = run(dataset, gen.data)
    check(result, gen)
    with mock.patch.object(parse_jsonl._Reader, "_attempt", return_value="forced"):  # every line through Python
        same(run(dataset, gen.data), result)


@SETTINGS
@given(rows, st.integers(40, 400), st.booleans())
def test_chunked_equals_whole(items: list[Any], chunk_size: int, as_csv: bool) -> None:
    gen = render_csv(items, "\n", 3, True) if as_csv else render_jsonl(items, "\n", 3, False)
    dataset = typed_dataset("csv" if as_csv else "jsonl")
    whole = run(dataset, gen.data)
    parts = [
        run(dataset, gen.data, chunk=r) for r in plan_chunks(len(gen.data), chunk_size, lambda a, b: gen.data[a:b])
    ]
    assert sum(p.rows_in for p in parts) == whole.rows_in
    merged = sorted((row for p in parts for row in good_rows(p)), key=lambda r: r["_source_line"])
    assert merged == good_rows(whole)
    quarantined = sorted((q for p in parts for q in p.quarantine.to_pylist()), key=lambda q: q["_source_line"])
    assert quarantined == whole.quarantine.to_pylist()
