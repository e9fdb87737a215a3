"""Parquet output: reads back identically (pyarrow, DuckDB, pandas), Glue types, bloom filters, names."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts.arrow import DEFAULT_BATCH_ROWS, lake_schema, write_batch_rows
from contracts.datasets import Dataset, get_dataset
from etl import samples
from services.transform.core import TransformResult
from services.transform.parquet import (
    file_name,
    parquet_bytes,
    write_partition,
    writer_options,
)
from tests.services.transform_helpers import csv_text, plain, run, typed_dataset

CUSTOMERS = get_dataset("customers")
ORDERS = get_dataset("orders")


def typed_result() -> TransformResult:
    rows = [
        [str(i), str(i % 7 - 3), f"{i % 1000 - 500}.{i % 100:02d}", f"{i / 7:.5f}", ("true", "false", "")[i % 3],
         f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d}", f"2024-03-07T12:{i % 60:02d}:00.{i:06d}"[:26], f"note {i}",
         ("eu", "us")[i % 2]]
        for i in range(1, 400)
    ]  # fmt: skip
    return run(typed_dataset(), csv_text(rows))


CASES = {
    "customers": (CUSTOMERS, lambda: run(CUSTOMERS, samples.customers_csv(600, hostile=5).data)),
    "orders": (ORDERS, lambda: run(ORDERS, samples.orders_jsonl(600, hostile=5).data)),
    "typed": (typed_dataset(), typed_result),
}


def glue_type(column: pq.ColumnSchema) -> str:
    """The Glue/Athena type a reader derives from a Parquet column's physical and logical type."""
    logical = column.logical_type
    if logical.type == "DECIMAL":
        return f"decimal({column.precision},{column.scale})"
    if logical.type == "TIMESTAMP":
        assert '"timeUnit":"microseconds"' in logical.to_json().replace(" ", "")
        assert '"isAdjustedToUTC":false' in logical.to_json().replace(" ", "")
        return "timestamp"
    if logical.type == "DATE":
        return "date"
    if logical.type == "STRING":
        return "string"
    return {"INT64": "bigint", "INT32": "int", "DOUBLE": "double", "BOOLEAN": "boolean"}[column.physical_type]


@pytest.fixture(params=sorted(CASES))
def written(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Dataset, TransformResult, list[Path]]:
    dataset, make = CASES[request.param]
    result = make()
    paths = []
    for part in result.partitions:
        path = tmp_path / part.path / file_name(result.object_id, result.chunk_index, part.values)
        path.parent.mkdir(parents=True)
        metadata = write_partition(part.table, path, dataset)
        assert metadata.num_rows == part.table.num_rows
        paths.append(path)
    return dataset, result, paths


def test_pyarrow_reads_back_identical_tables(written: tuple[Dataset, TransformResult, list[Path]]) -> None:
    dataset, result, paths = written
    for part, path in zip(result.partitions, paths, strict=True):
        back = pq.read_table(path)
        assert back.equals(plain(part.table))
        assert back.schema.equals(lake_schema(dataset))


def test_duckdb_reads_back_identical_rows(written: tuple[Dataset, TransformResult, list[Path]]) -> None:
    dataset, result, paths = written
    con = duckdb.connect()
    for part, path in zip(result.partitions, paths, strict=True):
        rows = con.execute(f"SELECT * FROM read_parquet('{path}', hive_partitioning = false)").fetchall()
        assert rows == [tuple(r.values()) for r in part.table.to_pylist()]
        # Hive layout: the partition values come back from the path, not from the file
        keys = ", ".join(dataset.partition_names)
        hive = f"read_parquet('{path}', hive_partitioning = true, hive_types_autocast = false)"
        assert con.execute(f"SELECT DISTINCT {keys} FROM {hive}").fetchall() == [tuple(part.values.values())]


def test_pandas_reads_back_identical_frames(written: tuple[Dataset, TransformResult, list[Path]]) -> None:
    _, result, paths = written
    for part, path in zip(result.partitions, paths, strict=True):
        pd.testing.assert_frame_equal(pd.read_parquet(path), plain(part.table).to_pandas())


def test_parquet_types_are_the_contract_glue_types(written: tuple[Dataset, TransformResult, list[Path]]) -> None:
    dataset, _, paths = written
    expected = [c.glue_type for c in dataset.columns] + ["string", "bigint"]
    for path in paths:
        schema = pq.ParquetFile(path).schema
        assert [schema.column(i).name for i in range(len(schema))] == [f.name for f in lake_schema(dataset)]
        assert [glue_type(schema.column(i)) for i in range(len(schema))] == expected


def test_writer_settings(written: tuple[Dataset, TransformResult, list[Path]]) -> None:
    dataset, result, paths = written
    con = duckdb.connect()
    for part, path in zip(result.partitions, paths, strict=True):
        meta = pq.ParquetFile(path).metadata
        group = meta.row_group(0)
        for i in range(meta.num_columns):
            column = group.column(i)
            assert column.compression == "ZSTD" and column.is_stats_set
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        assert [names[s.column_index] for s in group.sorting_columns] == list(dataset.sort_key)
        for subject in dataset.subject_columns:
            present = part.table[subject][0].as_py()
            probe = f"SELECT bloom_filter_excludes FROM parquet_bloom_probe('{path}', '{subject}', {present})"
            assert con.execute(probe).fetchall() == [(False,)]  # a filter exists and does not exclude it
            absent = f"SELECT bloom_filter_excludes FROM parquet_bloom_probe('{path}', '{subject}', -987654321)"
            assert con.execute(absent).fetchall() == [(True,)]


def test_row_groups_follow_the_contract() -> None:
    dataset = CUSTOMERS.model_copy(update={"storage": CUSTOMERS.storage.model_copy(update={"row_group_rows": 1000})})
    table = pa.concat_tables([p.table for p in run(dataset, samples.customers_csv(2500).data).partitions])
    meta = pq.ParquetFile(pa.BufferReader(parquet_bytes(table, dataset))).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1000, 1000, 500]


@pytest.mark.parametrize(("codec", "stored"), [("snappy", "SNAPPY"), ("none", "UNCOMPRESSED"), ("gzip", "GZIP")])
def test_other_codecs(codec: str, stored: str) -> None:
    dataset = ORDERS.model_copy(update={"storage": ORDERS.storage.model_copy(update={"compression": codec})})
    part = run(dataset, samples.orders_jsonl(100).data).partitions[0]
    data = parquet_bytes(part.table, dataset)
    assert pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(0).column(0).compression == stored
    assert pq.read_table(pa.BufferReader(data)).equals(plain(part.table))


def test_file_names_are_deterministic_and_distinct() -> None:
    values = {"order_year": "2024", "order_month": "03"}
    name = file_name("3f2a9c0d1e2b4a5c6d7e", 4, values)
    assert name == file_name("3f2a9c0d1e2b4a5c6d7e", 4, dict(values))
    assert re.fullmatch(r"3f2a9c0d1e2b4a5c6d7e-00004-[0-9a-f]{12}\.parquet", name)
    others = {
        file_name("3f2a9c0d1e2b4a5c6d7e", 5, values),
        file_name("3f2a9c0d1e2b4a5c6d7f", 4, values),
        file_name("3f2a9c0d1e2b4a5c6d7e", 4, {"order_year": "2024", "order_month": "04"}),
    }
    assert name not in others and len(others) == 3


def test_a_retry_writes_the_same_bytes() -> None:
    data = samples.orders_jsonl(300, hostile=4).data
    first, second = run(ORDERS, data), run(ORDERS, data)
    assert [parquet_bytes(p.table, ORDERS) for p in first.partitions] == [
        parquet_bytes(p.table, ORDERS) for p in second.partitions
    ]


def test_bigger_write_batches_change_no_byte() -> None:
    """`write_batch_rows` only saves per-call overhead: on rows of ordinary width the pages, and so the
    file, are exactly those of parquet-cpp's default batch of 1,024 values."""
    rng = np.random.default_rng(7)
    n = 60_000
    words = np.array(["quick", "brown", "fox", "jumps", "over", "lazy", "dogs", "furiously", "regular", "deposits"])
    table = pa.table({
        "customer_id": pa.array(np.arange(n, dtype=np.int64)),
        "name": pa.array(rng.choice(words, n)).dictionary_encode(),
        "email": pa.array([" ".join(rng.choice(words, 6)) for _ in range(n)]),
        "phone": pa.array(rng.integers(10**9, 10**10, n).astype(str)),
        "country": pa.array(rng.choice(["DE", "FR", "US"], n)).dictionary_encode(),
        "signup_date": pa.array(np.sort(rng.integers(18000, 19000, n)).astype("datetime64[D]")),
        "_source_object_id": pa.array(["o"] * n).dictionary_encode(),
        "_source_line": pa.array(np.arange(2, n + 2, dtype=np.int64)),
    })
    assert write_batch_rows(table) > DEFAULT_BATCH_ROWS

    def written(**override: object) -> bytes:
        sink = pa.BufferOutputStream()
        writer = pq.ParquetWriter(sink, table.schema, **{**writer_options(table, CUSTOMERS), **override})
        writer.write_table(table, row_group_size=CUSTOMERS.storage.row_group_rows)
        writer.close()
        return sink.getvalue().to_pybytes()

    assert written() == written(write_batch_size=DEFAULT_BATCH_ROWS)
    assert pq.read_table(pa.BufferReader(written())).equals(plain(table))
