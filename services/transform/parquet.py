"""Parquet files of one partition, written the way Athena and the erasure service read them best.

Choices (measured in docs/benchmarks.md, TPC-H orders):
* pyarrow 26 writes Parquet bloom filters itself (`bloom_filter_options`): one on each subject
  column lets erasure skip row groups without the subject. DuckDB's COPY was measured as the
  alternative writer and rejected: slower on the same tables, and it only writes bloom filters
  for dictionary-encoded columns, i.e. never for a high-cardinality subject id.
* compression per contract (zstd level 1 by default), statistics and the page index on, row groups
  of `storage.row_group_rows`, the sort order recorded as `sorting_columns`.
* free text (strings without a dictionary) as DELTA_LENGTH_BYTE_ARRAY: lengths stored apart from the
  bytes let zstd level 1 beat PLAIN at level 3 on size, for 14% less encoding CPU.
* dictionary encoding only where a sample says values repeat (encoding.py).
* no Arrow schema in the footer: every reader (pyarrow, DuckDB, pandas, Athena) takes the types
  from Parquet's own logical types, so dictionary-encoded string columns read back as strings.
* DELTA_BINARY_PACKED for `_source_line` and integer sort-key columns: near-monotonic values shrink
  to a few bits each.
* the contract it was written with, as footer key-value metadata (`etl.contract.dataset`,
  `etl.contract.version`, `etl.contract.fingerprint`; contracts/schema_evolution.py reads them back).
* decimals with precision <= 18 as INT32/INT64 (as DuckDB and Spark write them); Athena, Trino, Spark
  and DuckDB read them as decimal(p,s). Timestamps are microseconds without zone
  (TIMESTAMP(isAdjustedToUTC=false, MICROS)), which Athena reads as `timestamp`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from contracts.arrow import lake_schema as lake_schema  # re-exported: the schema these files are written in
from contracts.arrow import write_batch_rows
from contracts.datasets import Dataset
from contracts.lineage import LINE_COLUMN
from contracts.schema_evolution import footer_metadata
from services.transform.encoding import WRITER_SAMPLE_ROWS, repeating_columns
from services.transform.partition import partition_path

#: false-positive probability of the subject-column bloom filters
BLOOM_FPP = 0.05
_CODECS = {"zstd": "zstd", "snappy": "snappy", "gzip": "gzip", "none": "none"}
#: zstd effort, per column: free text is written DELTA_LENGTH_BYTE_ARRAY (lengths apart from the
#: bytes), which at level 1 is smaller than PLAIN at level 3 for 14% less encoding CPU (TPC-H SF1
#: orders: 40.4 vs 40.9 MB, docs/benchmarks.md); numbers, dates and dictionary codes: level 1 too
ZSTD_TEXT_LEVEL, ZSTD_LEVEL = 1, 1
#: encoding of free text (string columns without a dictionary); Athena (Trino), Spark, DuckDB and
#: pyarrow read it, and erasure's rewrite keeps it (services/erasure/rewrite.py)
TEXT_ENCODING = "DELTA_LENGTH_BYTE_ARRAY"


def _free_text(table: pa.Table, dictionary: list[str]) -> list[str]:
    return [f.name for f in table.schema if pa.types.is_string(f.type) and f.name not in dictionary]


def _zstd_levels(table: pa.Table, dictionary: list[str]) -> dict[str, int]:
    text = set(_free_text(table, dictionary))
    return {f.name: ZSTD_TEXT_LEVEL if f.name in text else ZSTD_LEVEL for f in table.schema}


def writer_options(table: pa.Table, dataset: Dataset) -> dict[str, Any]:
    """ParquetWriter keyword arguments for one partition table."""
    names = table.column_names
    delta = [
        n
        for n in names
        if n == LINE_COLUMN or (n in dataset.sort_key and pa.types.is_integer(table.schema.field(n).type))
    ]
    candidates = [n for n in names if n not in delta and not pa.types.is_boolean(table.schema.field(n).type)]
    dictionary = sorted(repeating_columns(table, candidates, WRITER_SAMPLE_ROWS), key=names.index)
    ndv = max(1, min(table.num_rows, dataset.storage.row_group_rows))
    codec = _CODECS[dataset.storage.compression]
    return {
        "compression": codec,
        "compression_level": _zstd_levels(table, dictionary) if codec == "zstd" else None,
        "use_dictionary": dictionary,
        "column_encoding": {**dict.fromkeys(delta, "DELTA_BINARY_PACKED"),
                            **dict.fromkeys(_free_text(table, dictionary), TEXT_ENCODING)},
        "write_statistics": True,
        "write_batch_size": write_batch_rows(table),
        "write_page_index": True,
        "store_decimal_as_integer": True,
        "store_schema": False,  # readers take types from Parquet alone: dictionary columns read back as strings
        "bloom_filter_options": {c: {"ndv": ndv, "fpp": BLOOM_FPP} for c in dataset.subject_columns if c in names},
        "sorting_columns": pq.SortingColumn.from_ordering(
            table.schema, [(c, "ascending") for c in dataset.sort_key if c in names]
        )
        or None,
    }


def write_partition(table: pa.Table, sink: Any, dataset: Dataset) -> pq.FileMetaData:
    """Write one partition table to `sink` (path, file object or pyarrow stream); returns its footer."""
    writer = pq.ParquetWriter(sink, table.schema, **writer_options(table, dataset))
    writer.add_key_value_metadata(footer_metadata(dataset))
    try:
        writer.write_table(table, row_group_size=dataset.storage.row_group_rows)
    finally:
        writer.close()
    return writer.writer.metadata


def parquet_bytes(table: pa.Table, dataset: Dataset) -> bytes:
    """The Parquet file of one partition table, in memory (for a single S3 PUT)."""
    sink = pa.BufferOutputStream()
    write_partition(table, sink, dataset)
    return sink.getvalue().to_pybytes()


def file_name(object_id: str, chunk_index: int, partition_values: dict[str, str]) -> str:
    """Deterministic name of the file one chunk writes into one partition: a retry overwrites it.

    The partition is hashed into the name as well, so files moved out of their folder (compaction
    staging, erasure copies) still cannot collide.
    """
    digest = hashlib.sha256(partition_path(partition_values).encode()).hexdigest()[:12]
    return f"{object_id}-{chunk_index:05d}-{digest}.parquet"
