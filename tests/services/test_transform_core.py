"""transform(): parsing, per-type casting, hostile input and whole-object errors."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import re
from decimal import Decimal
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pytest

from contracts.arrow import lake_schema
from contracts.datasets import get_dataset, parse_dataset
from etl import samples
from services.transform import encoding, partition
from services.transform.chunks import ByteRange
from services.transform.core import transform
from services.transform.errors import TransformError
from tests.services.transform_helpers import (
    TYPED_COLUMNS,
    by_partition,
    csv_text,
    good_rows,
    plain,
    reasons,
    run,
    typed_dataset,
)

CUSTOMERS = get_dataset("customers")
ORDERS = get_dataset("orders")
HEADER = b"customer_id,name,email,phone,country,signup_date\n"


def customers(*lines: str) -> bytes:
    return HEADER + "".join(f"{line}\n" for line in lines).encode()


def orders(*lines: str) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


def order(**overrides: object) -> str:
    import json

    values = {"order_id": 1, "customer_id": 7, "amount": "12.30", "status": "paid", "order_date": "2024-03-07"}
    values.update(overrides)
    return json.dumps(values)


def typed_row(**values: str) -> list[str]:
    row = {"id": "1", "region": "eu"} | values
    return [row.get(c, "") for c in TYPED_COLUMNS]


# --- happy paths ---------------------------------------------------------------------------------


def test_customers_are_typed_partitioned_and_sorted() -> None:
    data = customers(
        "3,Cleo,c@x.io,+4930,DE,2024-03-07",
        "1,Ann,a@x.io,,FR,2024-03-01",
        "2,Bob,,,US,2023-12-31",
    )
    result = run(CUSTOMERS, data)
    assert result.rows_in == 3 and result.rows_good == 3 and result.rows_quarantined == 0
    parts = by_partition(result)
    assert list(parts) == ["signup_year=2023/signup_month=12", "signup_year=2024/signup_month=03"]
    assert [r["customer_id"] for r in parts["signup_year=2024/signup_month=03"]] == [1, 3]
    first = parts["signup_year=2024/signup_month=03"][0]
    assert first == {
        "customer_id": 1,
        "name": "Ann",
        "email": "a@x.io",
        "phone": None,  # empty CSV field: null
        "country": "FR",
        "signup_date": dt.date(2024, 3, 1),
        "_source_object_id": "obj",
        "_source_line": 3,
    }
    for p in result.partitions:
        schema = plain(p.table).schema
        assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in lake_schema(CUSTOMERS)]
        assert "signup_year" not in p.table.column_names and "signup_month" not in p.table.column_names


def test_orders_jsonl_are_typed_with_exact_decimals() -> None:
    result = run(ORDERS, orders(order(amount=12.3), order(order_id=2, amount="0.10", order_date="2023-01-05")))
    rows = good_rows(result)
    assert [r["amount"] for r in rows] == [Decimal("12.30"), Decimal("0.10")]
    assert [p.path for p in result.partitions] == ["order_year=2023/order_month=01", "order_year=2024/order_month=03"]
    assert [f.type for f in plain(result.partitions[0].table).schema] == [f.type for f in lake_schema(ORDERS)]


def test_shipped_samples_quarantine_exactly_their_hostile_lines() -> None:
    root = Path(__file__).resolve().parents[2] / "samples"
    for dataset, path, gen in [
        (CUSTOMERS, root / "customers" / "customers-0001.csv", samples.customers_csv(200, hostile=7)),
        (ORDERS, root / "orders" / "orders-0001.jsonl", samples.orders_jsonl(500, hostile=10)),
    ]:
        assert path.read_bytes() == gen.data  # the committed files are what the generator makes
        result = run(dataset, path)
        assert set(reasons(result)) == set(gen.hostile)
        assert result.rows_in == gen.rows


# --- per-type casting ----------------------------------------------------------------------------

GOOD_VALUES = [
    ("small", "42", 42),
    ("small", " -7 ", -7),
    ("small", "+5", 5),
    ("price", "12.3", Decimal("12.30")),
    ("price", "-0.5", Decimal("-0.50")),
    ("price", "1e2", Decimal("100.00")),
    ("price", "12.300", Decimal("12.30")),
    ("ratio", "1.5e3", 1500.0),
    ("flag", "TRUE", True),
    ("flag", "0", False),
    ("day", "2024-02-29", dt.date(2024, 2, 29)),
    ("at", "2024-03-07T12:30:00", dt.datetime(2024, 3, 7, 12, 30)),
    ("at", "2024-03-07 12:30:00.123456", dt.datetime(2024, 3, 7, 12, 30, 0, 123456)),
    ("at", "2024-03-07T12:30:00+02:00", dt.datetime(2024, 3, 7, 10, 30)),
    ("at", "2024-03-07T12:30:00Z", dt.datetime(2024, 3, 7, 12, 30)),
    ("at", "2024-03-07", dt.datetime(2024, 3, 7)),
    ("note", "  spaced  ", "  spaced  "),
    ("note", "", None),
    ("small", "", None),
]

BAD_VALUES = [
    ("small", "4.2", "small: '4.2' is not an integer"),
    ("small", "0x1F", "small: '0x1F' is not an integer"),
    ("small", "3000000000", "small: '3000000000' is out of range for int32"),
    ("id", "9223372036854775808", "id: '9223372036854775808' is out of range for int64"),
    ("price", "1.005", "price: '1.005' has 3 decimal places, decimal(5,2) allows 2"),
    ("price", "1234.5", "price: '1234.5' has 4 digits before the decimal point, decimal(5,2) allows 3"),
    ("price", "1e0x9", "price: '1e0x9' is not a decimal number"),
    ("price", "12.5.0", "price: '12.5.0' is not a decimal number"),
    ("ratio", "1.5.0", "ratio: '1.5.0' is not a float64 number"),
    ("flag", "yes", "flag: 'yes' is not a boolean"),
    ("day", "2023-02-29", "day: '2023-02-29' is not a calendar date"),
    ("day", "2024-02-30", "day: '2024-02-30' is not a calendar date"),
    ("day", "07/03/2024", "day: '07/03/2024' is not a date (expected YYYY-MM-DD)"),
    ("at", "2024-03-07T25:00:00", "at: '2024-03-07T25:00:00' is not a timestamp"),
    ("id", "", "id: empty, but the column is not nullable"),
]


@pytest.mark.parametrize(("column", "text", "expected"), GOOD_VALUES)
def test_good_values_cast_per_type(column: str, text: str, expected: object) -> None:
    # alone in its column (fast path) and next to a bad value (slow path): same result
    for extra in ([], [typed_row(id="2", **{column: "\u00a7bad"})]):
        result = run(typed_dataset(), csv_text([typed_row(**{column: text}), *extra]))
        row = good_rows(result)[0]
        assert row[column] == expected
        assert row["_source_line"] == 2


@pytest.mark.parametrize(("column", "text", "reason"), BAD_VALUES)
def test_bad_values_are_quarantined_with_column_and_value(column: str, text: str, reason: str) -> None:
    data = csv_text([typed_row(id="1"), typed_row(**{"id": "2", column: text})])
    result = run(typed_dataset(), data)
    assert result.rows_quarantined == 1 and result.rows_good == 1
    assert reasons(result)[3].startswith(reason)
    bad = result.quarantine.to_pylist()[0]
    assert bad[column] == text and bad["_raw"] is None  # the original text is kept


def test_all_problems_of_a_row_are_reported_in_column_order() -> None:
    result = run(typed_dataset(), csv_text([typed_row(id="x", price="1.234", day="2024-13-01")]))
    assert reasons(result)[2] == (
        "id: 'x' is not an integer; price: '1.234' has 3 decimal places, decimal(5,2) allows 2; "
        "day: '2024-13-01' is not a calendar date"
    )
    assert result.quarantine_reasons == {"bad_value": 1}


# --- hostile rows: quarantine with a specific reason -------------------------------------------------

HOSTILE_CSV = [
    ("1,Ann,a@x.io,,DE", "wrong column count: expected 6 fields, found 5"),
    ("1,Ann,a@x.io,,DE,2024-01-01,extra", "wrong column count: expected 6 fields, found 7"),
    ("   ", "wrong column count: expected 6 fields, found 1"),
    ("C-1,Ann,a@x.io,,DE,2024-01-01", "customer_id: 'C-1' is not an integer"),
    ("1,Ann,a@x.io,,,2024-01-01", "country: empty, but the column is not nullable"),
    ("1,Ann,a@x.io,,DE,2024-02-30", "signup_date: '2024-02-30' is not a calendar date"),
    ("1,Ann,a@x.io,,DE,", "signup_date: empty, but the column is not nullable"),
]

HOSTILE_JSONL = [
    ('{"order_id": 1, "customer_id": 7', "invalid JSON: Expecting ',' delimiter (column 33)"),
    ("[1, 2]", "the line holds an array, not a JSON object"),
    ('"just text"', "the line holds a string, not a JSON object"),
    ("42", "the line holds a number, not a JSON object"),
    ("null", "the line holds null, not a JSON object"),
    (order(amount={"value": 1}), "amount: expected a single value, found an object"),
    (order(status=["paid"]), "status: expected a single value, found an array"),
    (order()[:-1] + ', "order_id": 2}', "key 'order_id' appears twice in the JSON object"),
    (order(status=None), "status: empty, but the column is not nullable"),
    (order()[:-1].replace('"status": "paid", ', "") + "}", "status: empty, but the column is not nullable"),
    (order(customer_id=10**20), "customer_id: '100000000000000000000' is out of range for int64"),
    (order(amount="12.345"), "amount: '12.345' has 3 decimal places, decimal(12,2) allows 2"),
    # the fast reader has already made a decimal of it: the reason shows it at the contract's scale
    (order(amount=12345678901.5), "amount: '12345678901.50' has 11 digits before the decimal point, decimal(12,2)"),
    (order(amount="-12345678901"), "amount: '-12345678901.00' has 11 digits before the decimal point"),
    (order(order_date="2023-02-29"), "order_date: '2023-02-29' is not a calendar date"),
    (order(order_id=1.5), "order_id: '1.5' is not an integer"),
    (order(order_id=True), "order_id: 'true' is not an integer"),
    (order() + order(), "invalid JSON: Extra data (column"),
    ('{"order_id": NaN}', "invalid JSON: NaN is not valid JSON"),
    ('{"status": "\\ud800"}', "invalid JSON: a \\u escape encodes a lone surrogate"),
    ('{"order_id": 1,}', "invalid JSON: Expecting property name enclosed in double quotes"),
]


@pytest.mark.parametrize(("line", "reason"), HOSTILE_CSV)
def test_hostile_csv_rows_are_quarantined(line: str, reason: str) -> None:
    result = run(CUSTOMERS, customers("1,Ann,a@x.io,,DE,2024-01-01", line, "2,Bob,b@x.io,,FR,2024-01-02"))
    assert result.rows_in == 3 and result.rows_good == 2 and result.rows_quarantined == 1
    assert reasons(result)[3].startswith(reason)
    assert [r["_source_line"] for r in good_rows(result)] == [2, 4]


@pytest.mark.parametrize(("line", "reason"), HOSTILE_JSONL)
def test_hostile_jsonl_lines_are_quarantined(line: str, reason: str) -> None:
    result = run(ORDERS, orders(order(order_id=10), line, order(order_id=11)))
    assert result.rows_in == 3 and result.rows_good == 2 and result.rows_quarantined == 1
    assert reasons(result)[2].startswith(reason)
    assert [r["order_id"] for r in good_rows(result)] == [10, 11]
    bad = result.quarantine.to_pylist()[0]
    assert bad["_source"] == "s3://raw/obj" and bad["_source_object_id"] == "obj"


def test_unsplittable_rows_keep_their_raw_text() -> None:
    result = run(ORDERS, orders("{broken", order()))
    (bad,) = result.quarantine.to_pylist()
    assert bad["_raw"] == "{broken" and bad["order_id"] is None
    assert result.quarantine_reasons == {"invalid_json": 1}


def test_unusable_partition_values_are_quarantined() -> None:
    ds = typed_dataset()
    rows = [typed_row(id="1", region="eu"), typed_row(id="2", region="a/b"), typed_row(id="3", region="..")]
    result = run(ds, csv_text(rows))
    assert result.rows_good == 1 and result.quarantine_reasons == {"bad_partition": 2}
    assert reasons(result)[3].startswith("region_key: 'a/b' cannot be a partition value")
    assert reasons(result)[4].startswith("region_key: '..' cannot be a partition value")


def test_a_partition_value_too_long_for_a_lake_key_is_quarantined() -> None:
    ds = typed_dataset()
    result = run(ds, csv_text([typed_row(id="1", region="é" * 128), typed_row(id="2", region="eu")]))
    assert [r["id"] for r in good_rows(result)] == [2]
    assert reasons(result)[2].startswith("region_key: a 256-byte value cannot be a partition value")


def test_missing_partition_source_is_quarantined() -> None:
    toml = CUSTOMERS.model_dump()
    toml["columns"] = [dict(c, nullable=True) if c["name"] == "signup_date" else c for c in toml["columns"]]
    ds = type(CUSTOMERS).model_validate(toml)
    result = run(ds, customers("1,Ann,a@x.io,,DE,", "2,Bob,b@x.io,,FR,2024-01-02"))
    assert reasons(result)[2] == "signup_year: partition source signup_date is empty, so the row has no partition"


def test_quoted_newline_where_the_contract_forbids_it_quarantines_the_record_whole() -> None:
    # embedded_newlines = false: the record is one record of two lines, refused whole; its tail is no row
    result = run(CUSTOMERS, customers('1,"Ann', 'Smith",a@x.io,,DE,2024-01-01', "2,Bob,b@x.io,,FR,2024-01-02"))
    assert result.rows_in == 2 and result.rows_good == 1
    assert reasons(result) == {2: "a quoted value spans lines 2-3, but the contract does not allow newlines in "
                                  "values (format.embedded_newlines)"}
    (q,) = result.quarantine.to_pylist()
    assert q["_raw"] == '1,"Ann\nSmith",a@x.io,,DE,2024-01-01' and result.quarantine_reasons == {"spans_lines": 1}


def test_the_tail_of_a_spanning_record_never_becomes_a_row_of_someone_else() -> None:
    """Issue #12: `10210,"note⏎42,x",…` must not yield a row of customer 42."""
    data = customers('10210,"note', '42,x",m@x.com,,DE,2024-01-01', "7,Eve,e@x.io,,FR,2024-01-02")
    for crlf in (False, True):
        result = run(CUSTOMERS, data.replace(b"\n", b"\r\n") if crlf else data)
        assert [r["customer_id"] for r in good_rows(result)] == [7]
        assert result.rows_quarantined == 1


def test_quoted_newline_where_the_contract_allows_it_is_one_value() -> None:
    ds = typed_dataset(embedded=True)
    data = csv_text([typed_row(id="1", note='"two\nlines"'), typed_row(id="2", note='"x"')])
    result = run(ds, data)
    rows = good_rows(result)
    assert [(r["note"], r["_source_line"]) for r in rows] == [("two\nlines", 2), ("x", 4)]
    bad = run(ds, csv_text([typed_row(id="1"), ["1", "2"], typed_row(id="3", note='"a\nb"')]))
    assert reasons(bad) == {3: "wrong column count: expected 9 fields, found 2"}
    assert [r["_source_line"] for r in good_rows(bad)] == [2, 4]


def test_unterminated_quote_at_the_end_is_quarantined_whole() -> None:
    result = run(CUSTOMERS, customers("1,Ann,a@x.io,,DE,2024-01-01", '2,"Bob,b@x.io,,FR,2024-01-02'))
    assert result.rows_in == 2 and result.rows_good == 1
    assert reasons(result)[3] == "a quoted value opened on line 3 is never closed"
    spanning = run(typed_dataset(embedded=True), csv_text([typed_row(id="1"), typed_row(id="2", note='"a')]) + b"b\n")
    assert reasons(spanning) == {3: "a quoted value opened on lines 3-4 is never closed"}


# --- whole-object errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("customer_id,name\nä,1\n".encode("latin-1"), "is not UTF-8 text (invalid byte 0xe4 at offset 17)"),
        (bytes(range(256)) * 4, "is not UTF-8 text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "is not UTF-8 text"),
        (HEADER + b"1,Ann,\x00,,DE,2024-01-01\n", "contains a NUL byte at offset 55"),
        ("customer_id,name\n".encode("utf-16"), "is UTF-16 (byte order mark found)"),
        (b"PK\x03\x04rest", "is a zip archive"),
        (gzip.compress(HEADER * 50, mtime=0)[:40], "is not a readable gzip stream"),
        (b"customer_id,name,email,phone,country\n1,a,b,c,DE\n", "missing signup_date"),
        (b"customer_id,name,email,phone,country,signup_date,vip\n", "unexpected 'vip'"),
        (b"10210,Ann Lee,ann@x.io,+4412,GB,2024-01-01\n", "none of its 6 fields is a column of the contract"),
        (b"name,customer_id,email,phone,country,signup_date\n", "columns in another order"),
        (b"id;name;email;phone;country;signup_date\n", "CSV header on line 1 does not match dataset 'customers'"),
    ],
)
def test_unreadable_objects_raise_with_object_and_reason(data: bytes, message: str) -> None:
    with pytest.raises(TransformError) as exc:
        run(CUSTOMERS, data, object_id="raw-42")
    assert str(exc.value).startswith("object raw-42: ")
    assert message in str(exc.value)


def test_chunks_that_cannot_work_raise() -> None:
    data = customers("1,Ann,a@x.io,,DE,2024-01-01", "2,Bob,b@x.io,,FR,2024-01-02")
    with pytest.raises(TransformError, match="cannot be processed in byte ranges"):
        run(CUSTOMERS, gzip.compress(data), chunk=ByteRange(0, 30))
    with pytest.raises(TransformError, match="beyond the object's"):
        run(CUSTOMERS, data, chunk=ByteRange(0, len(data) + 1))


# --- structure: empty, blank lines, endings, BOM, gzip, sources -----------------------------------------


@pytest.mark.parametrize(
    "data",
    # mtime=0: the same bytes (and test ids) in every xdist worker, whose collections must be identical
    [b"", b"\xef\xbb\xbf", HEADER, HEADER + b"\n\n", b"\n\n" + HEADER, gzip.compress(b"", mtime=0),
     gzip.compress(HEADER, mtime=0)],
)
def test_empty_csv_objects_have_no_rows(data: bytes) -> None:
    result = run(CUSTOMERS, data)
    assert (result.rows_in, result.partitions, result.quarantine.num_rows) == (0, [], 0)


@pytest.mark.parametrize("data", [b"", b"\n", b"\r\n\r\n", b"  \n\t\n"])
def test_empty_jsonl_objects_have_no_rows(data: bytes) -> None:
    assert run(ORDERS, data).rows_in == 0


def test_line_endings_bom_trailing_newline_and_blank_lines_do_not_change_rows() -> None:
    lines = ["1,Ann,a@x.io,,DE,2024-01-01", "2,Bob,b@x.io,,FR,2024-01-02"]
    reference = good_rows(run(CUSTOMERS, customers(*lines)))
    variants = {
        "crlf": (HEADER.decode() + "".join(f"{x}\r\n" for x in lines)).encode(),
        "no trailing newline": (HEADER.decode() + "\n".join(lines)).encode(),
        "bom": b"\xef\xbb\xbf" + customers(*lines),
        "lone cr": (HEADER.decode().replace("\n", "\r") + "\r".join(lines)).encode(),
        "gzip": gzip.compress(customers(*lines)),
    }
    for name, data in variants.items():
        assert good_rows(run(CUSTOMERS, data)) == reference, name
    blank = good_rows(run(CUSTOMERS, HEADER + b"\n" + lines[0].encode() + b"\r\n\r\n\n" + lines[1].encode()))
    assert [r["_source_line"] for r in blank] == [3, 6]
    assert [{k: v for k, v in r.items() if k != "_source_line"} for r in blank] == [
        {k: v for k, v in r.items() if k != "_source_line"} for r in reference
    ]


def test_jsonl_blank_lines_padding_and_line_numbers() -> None:
    data = b"\n" + order(order_id=1).encode() + b"\r\n   \n  " + order(order_id=2).encode() + b"  \n\n"
    result = run(ORDERS, data)
    assert [(r["order_id"], r["_source_line"]) for r in good_rows(result)] == [(1, 2), (2, 4)]


def test_header_matching_ignores_case_and_blanks() -> None:
    data = b"Customer_ID , NAME,email,phone,country,signup_date\r\n1,Ann,a@x.io,,DE,2024-01-01\r\n"
    assert run(CUSTOMERS, data).rows_good == 1


def test_json_extra_fields_are_ignored_and_quoted_numbers_accepted() -> None:
    line = '{"order_id": "5", "customer_id": 7, "amount": "1", "status": "paid", "order_date": "2024-01-01", "x": [1]}'
    (row,) = good_rows(run(ORDERS, orders(line)))
    assert (row["order_id"], row["amount"]) == (5, Decimal("1.00"))
    assert "x" not in row


def test_bytes_paths_files_and_pyarrow_files_give_the_same_result(tmp_path: Path) -> None:
    data = samples.customers_csv(50, hostile=3).data
    path = tmp_path / "whatever.name"
    path.write_bytes(data)
    expected = run(CUSTOMERS, data)
    for source in (path, str(path), io.BytesIO(data), pa.BufferReader(data), pa.OSFile(str(path))):
        result = run(CUSTOMERS, source)
        assert good_rows(result) == good_rows(expected)
        assert result.quarantine.equals(expected.quarantine)


def test_partition_tables_are_sorted_by_sort_key_then_line() -> None:
    data = orders(
        order(order_id=3, order_date="2024-03-02"),
        order(order_id=1, order_date="2024-03-02"),
        order(order_id=2, order_date="2024-03-01"),
        order(order_id=1, order_date="2024-03-02", status="dup"),
    )
    (part,) = run(ORDERS, data).partitions
    rows = part.table.to_pylist()
    assert [(r["order_date"].day, r["order_id"], r["_source_line"]) for r in rows] == [
        (1, 2, 3),
        (2, 1, 2),
        (2, 1, 4),
        (2, 3, 1),
    ]


@pytest.mark.parametrize("cpus", [1, 2])
def test_partitions_of_the_sort_columns_year_and_month_are_cut_where_they_change(
        cpus: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Year/month partitions of the first sort column are found from the rows where its value changes; the
    same partitions, values, rows and order as sorting by the partition keys first (the general way)."""
    import random

    rng = random.Random(7)
    days = [dt.date(2022, 1, 1) + dt.timedelta(days=rng.randrange(3 * 365)) for _ in range(3000)]
    data = orders(*(order(order_id=rng.randrange(500), order_date=d.isoformat()) for d in days))
    monkeypatch.setattr(encoding, "PARALLEL_ROWS", 100)  # the threaded preparation at two CPUs
    before = pa.cpu_count()
    pa.set_cpu_count(cpus)
    try:
        implied = run(ORDERS, data)
        with mock.patch.object(partition, "_sort_implies_partitions", return_value=False):
            general = run(ORDERS, data)
    finally:
        pa.set_cpu_count(before)
    assert len(implied.partitions) == 36
    assert [p.values for p in implied.partitions] == [p.values for p in general.partitions]
    assert all(a.table.equals(b.table) for a, b in zip(implied.partitions, general.partitions, strict=True))
    for part in implied.partitions:
        rows = part.table.to_pylist()
        assert {(r["order_date"].year, r["order_date"].month) for r in rows} == {
            (int(part.values["order_year"]), int(part.values["order_month"]))}
        assert rows == sorted(rows, key=lambda r: (r["order_date"], r["order_id"], r["_source_line"]))


def test_quarantine_table_schema() -> None:
    result = run(CUSTOMERS, customers("x,Ann,a@x.io,,DE,2024-01-01"))
    assert result.quarantine.schema.names == [
        *[c.name for c in CUSTOMERS.columns],
        "_reason",
        "_raw",
        "_source_object_id",
        "_source_line",
        "_source",
    ]
    assert {f.type for f in result.quarantine.schema} == {pa.string(), pa.int64()}


def test_contract_delimiter_and_quote_are_used() -> None:
    ds = typed_dataset().model_copy(update={"format": typed_dataset().format.model_copy(update={"delimiter": "|"})})
    data = "|".join(TYPED_COLUMNS).encode() + b'\n7|1|2.5|||2024-01-02||"a|b, c"|eu\n'
    (row,) = good_rows(run(ds, data))
    assert (row["id"], row["price"], row["note"]) == (7, Decimal("2.50"), "a|b, c")


def test_identity_and_temporal_partitions_of_other_types() -> None:
    ds = parse_dataset(
        """
        name = "events"
        sort_key = ["at"]
        [format]
        type = "jsonl"
        [[partitioning]]
        name = "kind_key"
        source = "kind"
        [[partitioning]]
        name = "on"
        source = "day"
        [[partitioning]]
        name = "at_day"
        source = "at"
        transform = "day"
        [[columns]]
        name = "kind"
        type = "int32"
        nullable = false
        [[columns]]
        name = "day"
        type = "date"
        nullable = false
        [[columns]]
        name = "at"
        type = "timestamp"
        nullable = false
        """,
        "events.toml",
    )
    data = b'{"kind": -3, "day": "2024-03-07", "at": "2024-03-07T23:30:00-02:00"}\n'
    (part,) = run(ds, data).partitions
    assert part.values == {"kind_key": "-3", "on": "2024-03-07", "at_day": "08"}
    assert part.path == "kind_key=-3/on=2024-03-07/at_day=08"
    assert part.table["at"].to_pylist() == [dt.datetime(2024, 3, 8, 1, 30)]


def test_gzip_jsonl_equals_plain() -> None:
    sample = samples.orders_jsonl(200, hostile=10, seed=1)
    plain_result, packed = run(ORDERS, sample.data), run(ORDERS, gzip.compress(sample.data))
    assert good_rows(packed) == good_rows(plain_result)
    assert packed.quarantine.equals(plain_result.quarantine)


def test_float_identity_partitions_fold_negative_zero_and_refuse_nan() -> None:
    ds = parse_dataset(
        'name = "f"\n[format]\ntype = "jsonl"\n[[partitioning]]\nname = "k"\nsource = "x"\n'
        '[[columns]]\nname = "x"\ntype = "float64"\n',
        "f.toml",
    )
    result = run(ds, b'{"x": -0.0}\n{"x": 0.0}\n{"x": "nan"}\n{"x": 1.5}\n')
    assert [(p.path, p.table.num_rows) for p in result.partitions] == [("k=0.0", 2), ("k=1.5", 1)]
    assert reasons(result) == {3: "k: NaN cannot be a partition value"}


def test_a_lone_sign_is_not_an_integer() -> None:
    result = run(typed_dataset(), csv_text([typed_row(small="+"), typed_row(id="2", small="+-3")]))
    assert reasons(result) == {2: "small: '+' is not an integer", 3: "small: '+-3' is not an integer"}


def test_jsonl_quoted_numbers_mixed_with_numbers_and_bad_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.transform import parse_jsonl

    lines = []
    for i in range(1, 61):
        order_id = f'"{i}"' if i % 3 else str(i)  # quoted in two of three lines
        amount = ("12.345", '"7.5"', "8")[i % 3] if i % 7 == 0 else '"1.25"'
        lines.append(
            f'{{"order_id": {order_id}, "customer_id": {i}, "amount": {amount}, "status": "paid", '
            f'"order_date": "2024-01-{i % 28 + 1:02d}"}}'
        )
    lines[10] = "{not json"
    lines[40] = '{"order_id": {"nested": 1}}'
    data = ("\n".join(lines) + "\n").encode()
    expected = run(ORDERS, data)
    assert expected.rows_in == 60 and set(reasons(expected)) == {11, 41, 21, 42}  # 21 and 42: 12.345
    for block in (4, 16):  # small blocks: type switches, named rows and Python blocks all happen
        monkeypatch.setattr(parse_jsonl, "BLOCK_LINES", block)
        result = run(ORDERS, data)
        assert good_rows(result) == good_rows(expected)
        assert result.quarantine.equals(expected.quarantine)
    assert [r["order_id"] for r in good_rows(expected)][:3] == [1, 2, 3]


def test_many_bad_values_are_found_without_losing_good_ones() -> None:
    rows = [typed_row(id=str(i), day=("2023-02-29", "2024-02-29")[i % 2], price=("1.234", "1.23")[i % 2])
            for i in range(1, 2001)]  # fmt: skip
    result = run(typed_dataset(), csv_text(rows))
    assert result.rows_good == 1000 and result.rows_quarantined == 1000
    assert reasons(result)[3] == (
        "price: '1.234' has 3 decimal places, decimal(5,2) allows 2; day: '2023-02-29' is not a calendar date"
    )


def test_each_partition_is_handed_over_once_as_soon_as_it_is_sorted() -> None:
    """`ready` gets the result's partitions, in order, each once, and the same rows as without it; rows
    arrive out of order (so they are gathered slab by slab) and span more partitions than slabs."""
    data = samples.customers_csv(3000, hostile=5).data
    seen: list[object] = []
    gathered: list[int] = []
    take = partition._take
    with mock.patch.object(partition, "_take", lambda table, order: gathered.append(len(order)) or take(table, order)):
        result = transform(CUSTOMERS, data, object_id="obj", source="s3://raw/obj", ready=seen.append)
    assert len(gathered) == partition.SLABS and sum(gathered) == result.rows_good
    assert len(result.partitions) > partition.SLABS
    assert seen == result.partitions and all(a is b for a, b in zip(seen, result.partitions, strict=True))
    alone = run(CUSTOMERS, data)
    assert [p.values for p in alone.partitions] == [p.values for p in result.partitions]
    assert all(a.table.equals(b.table) for a, b in zip(alone.partitions, result.partitions, strict=True))
    assert result.quarantine.equals(alone.quarantine)


@pytest.mark.parametrize("cpus", [1, 2])
@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"id,wrong\n1,2\n3,\xff\n", "is not UTF-8 text (invalid byte 0xff at offset 15)"),  # and a bad header
        (HEADER + b"1,Ann,a@x.eu,+4930,DE,2024-01-0\xff\n" * 3, "is not UTF-8 text (invalid byte 0xff at offset 80)"),
        (HEADER + b"\xe2\x82,Ann,a@x.eu,+4930,DE,2024-01-01\n", "is not UTF-8 text (invalid byte 0xe2 at offset 49)"),
        (HEADER + b"1,Ann,a@x.eu,+4930,D\x00E,2024-01-01\n", "contains a NUL byte at offset 69"),
    ],
)
def test_text_that_is_not_utf8_fails_for_that_reason_whatever_the_parse_meets(
    data: bytes, why: str, cpus: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a second CPU the text's scans run beside the parse; the object still fails for the text,
    never for what the parse made of it (a header, a value that would be quarantined, a split character)."""
    monkeypatch.setattr(pa, "cpu_count", lambda: cpus)
    with pytest.raises(TransformError, match=re.escape(why)):
        run(CUSTOMERS, data)
