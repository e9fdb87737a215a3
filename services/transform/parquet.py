"""Parquet files of one partition, written the way Athena and the erasure service read them best.

The writer's choices (codec, encodings, dictionaries, bloom filters, page index, sort order...) are the
lake's file format, shared with compaction and erasure: contracts/lake_format.py holds them and says why.
Here: row groups of `storage.row_group_rows`, dictionaries decided on a sample of the partition's own
rows (its repeated strings arrive dictionary-encoded already, services/transform/encoding.py), and the
contract it was written with as footer key-value metadata (`etl.contract.dataset`,
`etl.contract.version`, `etl.contract.fingerprint`; contracts/schema_evolution.py reads them back).
Timestamps are microseconds without zone (TIMESTAMP(isAdjustedToUTC=false, MICROS)), which Athena reads
as `timestamp`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from contracts import lake_format
from contracts.arrow import lake_schema as lake_schema  # re-exported: the schema these files are written in
from contracts.datasets import Dataset
from contracts.schema_evolution import footer_metadata
from services.transform.partition import partition_path


def writer_options(table: pa.Table, dataset: Dataset) -> dict[str, Any]:
    """ParquetWriter keyword arguments for one partition table (bloom filters sized for its largest row group)."""
    ndv = min(table.num_rows, dataset.storage.row_group_rows)
    return lake_format.writer_options(table, dataset, ndv=ndv, sampling=lake_format.FILE_SAMPLING)


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
