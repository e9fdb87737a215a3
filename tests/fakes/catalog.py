"""A dataset's Glue table as the core stack declares it (infra/catalog.py), created through boto3 for tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts.datasets import Dataset
from infra.catalog import PARQUET_INPUT, PARQUET_OUTPUT, PARQUET_SERDE, table_columns


def create_dataset_table(glue: Any, database: str, ds: Dataset, lake_bucket: str,
                         columns: Sequence[tuple[str, str]] | None = None) -> None:
    """External Parquet table at s3://<lake>/<dataset>/, partitioned by the contract's keys (strings);
    `columns` default to what infra declares (contract columns, then lineage)."""
    glue.create_table(DatabaseName=database, TableInput={
        "Name": ds.name, "TableType": "EXTERNAL_TABLE",
        "PartitionKeys": [{"Name": n, "Type": "string"} for n in ds.partition_names],
        "StorageDescriptor": {"Columns": [{"Name": n, "Type": t} for n, t in (columns or table_columns(ds))],
                              "Location": f"s3://{lake_bucket}/{ds.name}/", "InputFormat": PARQUET_INPUT,
                              "OutputFormat": PARQUET_OUTPUT, "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE}}})
