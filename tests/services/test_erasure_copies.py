"""PURGE helpers: raw lines blanked exactly where transform counted them, quarantine rows matched by text."""

from __future__ import annotations

import gzip

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import aws, layout, records
from contracts.datasets import load_datasets
from contracts.records import line_spans
from services.erasure.copies import UTF8_BOM, blank_lines, lines_blank, quarantine_mask
from services.erasure.model import State
from services.erasure.subjects import Subjects
from services.transform.core import transform
from services.transform.lines import index_lines
from services.transform.quarantine import quarantine_schema
from tests.services.erasure_world import DAY, World

DATASETS = load_datasets()
CUSTOMERS, ORDERS = DATASETS["customers"], DATASETS["orders"]
SALT = b"unit-test-salt-0123456789"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r\n", b"\r", b"", b"x\r", b"\n\n"]), max_size=30))
def test_line_spans_agree_with_transforms_line_index(parts: list[bytes]) -> None:
    text = b"".join(parts)
    starts, ends = line_spans(text)
    ref = index_lines(text)
    assert np.array_equal(starts, ref.starts) and np.array_equal(ends, ref.ends)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b'"', b",", b"\n", b"\r\n", b"\r", b"x\r", b"\n\n"]), max_size=30),
       st.sets(st.integers(1, 12)))
def test_blanking_keeps_the_line_count_and_empties_every_line_of_the_records(parts: list[bytes],
                                                                            lines: set[int]) -> None:
    text = b"".join(parts)
    for dialect in (records.LINES, QUOTED):
        new, _ = blank_lines(text, lines, dialect)
        erased = records.record_lines(text, lines, dialect)
        (starts, ends), (o_starts, o_ends) = line_spans(new), line_spans(text)
        # an emptied last line without a break is no line at all: nothing after it to renumber
        assert len(starts) == len(o_starts) or (len(starts) == len(o_starts) - 1 and len(o_starts) in erased)
        assert all(starts[ln - 1] == ends[ln - 1] for ln in erased if ln <= len(starts))
        kept = [ln for ln in range(1, len(o_starts) + 1) if ln not in erased]
        assert [new[starts[ln - 1]:ends[ln - 1]] for ln in kept] == [
            text[o_starts[ln - 1]:o_ends[ln - 1]] for ln in kept], "every other line keeps its number"


def test_blanking_keeps_every_other_line_number() -> None:
    text = b"h\r\none\ntwo\rthree\r\nfour"
    new, changed = blank_lines(text, [2, 4, 99])
    assert (new, changed) == (b"h\r\n\ntwo\r\r\nfour", 2)
    assert lines_blank(new, [2, 4]) and not lines_blank(new, [3])


def test_blanking_keeps_a_bom_on_line_one() -> None:
    new, _ = blank_lines(UTF8_BOM + b'{"a":1}\n{"b":2}\n', [1])
    assert new == UTF8_BOM + b'\n{"b":2}\n'


def customers_csv(ids: list[int]) -> bytes:
    rows = [f"{i},N{i},n{i}@example.com,+44{i:07d},GB,2023-0{1 + i % 9}-11" for i in ids]
    return ("customer_id,name,email,phone,country,signup_date\n" + "\n".join(rows) + "\n").encode()


def test_a_blanked_raw_object_transforms_to_the_same_rows_minus_the_subjects() -> None:
    ids = list(range(100, 160))
    body = gzip.compress(customers_csv(ids))
    before = transform(CUSTOMERS, body, object_id="o", source="s3://raw/o")
    rows = {i: line for line, i in enumerate(ids, start=2)}
    erased = [rows[105], rows[150]]
    new, changed = blank_lines(gzip.decompress(body), erased)
    after = transform(CUSTOMERS, gzip.compress(new), object_id="o", source="s3://raw/o")
    assert changed == 2 and after.rows_in == before.rows_in - 2 and after.rows_quarantined == 0

    def lines_of(result: object) -> dict[int, int]:
        return {line: cid for p in result.partitions  # type: ignore[attr-defined]
                for cid, line in zip(p.table["customer_id"].to_pylist(), p.table["_source_line"].to_pylist(),
                                     strict=True)}

    expected = {line: cid for line, cid in lines_of(before).items() if cid not in (105, 150)}
    assert lines_of(after) == expected, "every other row keeps its line number"


QUOTED = records.Dialect.of(CUSTOMERS.format)


def test_blanking_cuts_whole_records_of_quoted_values_spanning_lines() -> None:
    text = b'id,note\r\n1,"a\r\nb"\r\n7,"Ann\nLee\rStreet",x\n9,"c"\n7,plain\n'
    new, changed = blank_lines(text, [4, 8], QUOTED)
    assert (new, changed) == (b'id,note\r\n1,"a\r\nb"\r\n\n\r\r\n9,"c"\n\n', 4)
    assert len(line_spans(new)[0]) == len(line_spans(text)[0]), "a lone \\r before an emptied line stays a break"
    assert lines_blank(new, [4, 5, 6, 8], QUOTED) and not lines_blank(new, [2], QUOTED)
    tail_left, _ = blank_lines(text, [4])  # the old line rule: the record's tail survives
    assert not lines_blank(tail_left, [4, 5, 6], QUOTED), "verification given every erased line sees the tail"
    assert blank_lines(text, [4], records.LINES)[1] == 1, "JSON Lines / unquoted CSV: records are lines"


def test_an_unclosed_quote_blanks_to_the_end_as_transform_reads_it() -> None:
    new, changed = blank_lines(b'h\n1,x\n7,"open\n8,y\n', [3], QUOTED)
    assert (new, changed) == (b"h\n1,x\n\n\n", 2)


@pytest.mark.parametrize("gz", [False, True])
def test_a_quarantined_multi_line_record_of_the_subject_is_blanked_on_every_line(world: World, gz: bool) -> None:
    """Transform quarantines a record whose quote spans lines as one row (lineage: its first line);
    erasure must blank all its lines, not only the first, and keep every other record's line number."""
    w = world
    body = (b"customer_id,name,email,phone,country,signup_date\n"
            b"1,Name 1,u1@example.com,+442000000001,GB,2023-01-15\n"
            b'7,"Ann\nMarie\r\nLee",ann7@x.example,+442000000007,GB,2023-01-15\n'
            b"9,Name 9,u9@example.com,+442000000009,GB,2023-01-15\n")
    oid = w.land("customers", body, "m.csv.gz" if gz else "m.csv", gz=gz)
    rid = w.request(["7"], ["customers"])
    w.drive()
    assert w.store.get(rid).state == State.COMPLETED, w.store.get(rid).error
    s3 = aws.client("s3")
    key = layout.raw_key("customers", DAY, oid, "m.csv.gz" if gz else "m.csv")
    assert len(s3.list_object_versions(Bucket=w.cfg.raw_bucket, Prefix=key)["Versions"]) == 1
    data = s3.get_object(Bucket=w.cfg.raw_bucket, Key=key)["Body"].read()
    raw = gzip.decompress(data) if gz else data
    for value in (b"Ann", b"Marie", b"Lee", b"ann7@", b"+442000000007"):
        assert value not in raw, "no byte of any line of the subject's record survives"
    assert raw.split(b"\n") == [b"customer_id,name,email,phone,country,signup_date",
                                 b"1,Name 1,u1@example.com,+442000000001,GB,2023-01-15", b"", b"\r", b"",
                                 b"9,Name 9,u9@example.com,+442000000009,GB,2023-01-15", b""]
    after = transform(CUSTOMERS, data, object_id=oid, source="s3://raw/o")
    lines = {cid: line for p in after.partitions
             for cid, line in zip(p.table["customer_id"].to_pylist(), p.table["_source_line"].to_pylist(),
                                  strict=True)}
    assert lines == {1: 2, 9: 6} and after.rows_quarantined == 0, "other records keep their line numbers"


def test_quarantine_rows_match_by_typed_text_and_raw_tokens() -> None:
    schema = quarantine_schema(ORDERS)
    rows = [
        {"customer_id": "042", "_reason": "amount: bad", "_raw": None},        # typed match: 42
        {"customer_id": "4200", "_reason": "amount: bad", "_raw": None},       # not 42
        {"customer_id": None, "_reason": "invalid json", "_raw": '{"customer_id": 42, "amount": "x'},
        {"customer_id": None, "_reason": "invalid json", "_raw": '{"customer_id": 142, "amount": 42.5'},
        {"customer_id": "abc", "_reason": "customer_id: not an int64", "_raw": None},
    ]
    table = pa.table({f.name: [r.get(f.name) for r in rows] if f.name in rows[0] else
                      ["o" if f.name == "_source_object_id" else ("s" if f.name == "_source" else None)] * len(rows)
                      for f in schema}, schema=schema.remove(schema.get_field_index("_source_line"))
                     ).append_column("_source_line", pa.array(range(1, 6), pa.int64()))
    mask = quarantine_mask(table, ORDERS, Subjects.of(["42"], SALT))
    assert mask.tolist() == [True, False, True, False, False]
    assert quarantine_mask(table, ORDERS, Subjects.of(["abc"], SALT)).tolist() == [False] * 5
