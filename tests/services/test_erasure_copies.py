"""PURGE helpers: raw lines blanked exactly where transform counted them, quarantine rows matched by text."""

from __future__ import annotations

import gzip

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.datasets import load_datasets
from services.erasure.copies import UTF8_BOM, blank_lines, line_oriented, line_spans, lines_blank, quarantine_mask
from services.erasure.subjects import Subjects
from services.transform.core import transform
from services.transform.lines import index_lines
from services.transform.quarantine import quarantine_schema

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


def test_jsonl_and_csv_without_quoted_newlines_are_line_oriented() -> None:
    assert line_oriented(ORDERS) and line_oriented(CUSTOMERS)
    multiline = CUSTOMERS.model_copy(update={"format": CUSTOMERS.format.model_copy(update={"embedded_newlines": True})})
    assert not line_oriented(multiline)


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
