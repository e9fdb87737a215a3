"""Partitions in the Glue catalog: the committer's Catalog."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from contracts import aws
from contracts.commits.errors import error_code
from contracts.datasets import Dataset

PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"

_PARTITION_INPUT_KEYS = ("Values", "LastAccessTime", "StorageDescriptor", "Parameters", "LastAnalyzedTime")


class GlueCatalog:
    """Glue partitions of the table named like the dataset; a new partition copies the table's format."""

    def __init__(self, database: str) -> None:
        self.database = database

    def location(self, dataset: Dataset, values: Sequence[str]) -> str | None:
        try:
            part = aws.client("glue").get_partition(
                DatabaseName=self.database, TableName=dataset.name, PartitionValues=list(values)
            )
        except ClientError as exc:
            if error_code(exc) == "EntityNotFoundException":
                return None
            raise
        return part["Partition"]["StorageDescriptor"].get("Location")

    def create(self, dataset: Dataset, values: Sequence[str], location: str) -> bool:
        """Register the partition with the table's columns and Parquet SerDe; False if it exists."""
        glue = aws.client("glue")
        table = glue.get_table(DatabaseName=self.database, Name=dataset.name)["Table"]
        sd = _partition_sd(table["StorageDescriptor"], location)
        try:
            glue.create_partition(
                DatabaseName=self.database,
                TableName=dataset.name,
                PartitionInput={"Values": list(values), "StorageDescriptor": sd},
            )
        except ClientError as exc:
            if error_code(exc) == "AlreadyExistsException":
                return False
            raise
        return True

    def set_location(self, dataset: Dataset, values: Sequence[str], location: str) -> None:
        glue = aws.client("glue")
        part = glue.get_partition(DatabaseName=self.database, TableName=dataset.name, PartitionValues=list(values))
        data = {k: v for k, v in part["Partition"].items() if k in _PARTITION_INPUT_KEYS}
        data["StorageDescriptor"] = {**data["StorageDescriptor"], "Location": location}
        glue.update_partition(
            DatabaseName=self.database, TableName=dataset.name, PartitionValueList=list(values), PartitionInput=data
        )


def _partition_sd(table_sd: Mapping[str, Any], location: str) -> dict[str, Any]:
    """A partition's StorageDescriptor: the table's columns and formats (Parquet), its own location."""
    return {
        "Columns": table_sd.get("Columns", []),
        "Location": location,
        "InputFormat": table_sd.get("InputFormat", PARQUET_INPUT),
        "OutputFormat": table_sd.get("OutputFormat", PARQUET_OUTPUT),
        "SerdeInfo": table_sd.get("SerdeInfo") or {"SerializationLibrary": PARQUET_SERDE},
        "Compressed": table_sd.get("Compressed", False),
    }
