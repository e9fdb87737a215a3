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

    def locations(self, dataset: Dataset, values: Sequence[Sequence[str]]) -> list[str | None]:
        """Locations of many partitions (None: not registered): BatchGetPartition, 1000 a request."""
        glue, found = aws.client("glue"), {}
        wanted = list(dict.fromkeys(tuple(v) for v in values))
        for i in range(0, len(wanted), 1000):
            todo = [{"Values": list(v)} for v in wanted[i : i + 1000]]
            for _ in range(8):
                resp = glue.batch_get_partition(
                    DatabaseName=self.database, TableName=dataset.name, PartitionsToGet=todo
                )
                for part in resp.get("Partitions", []):
                    found[tuple(part["Values"])] = part["StorageDescriptor"].get("Location")
                todo = resp.get("UnprocessedKeys") or []
                if not todo:
                    break
            else:
                raise RuntimeError(f"glue {self.database}.{dataset.name}: BatchGetPartition left keys unprocessed")
        return [found.get(tuple(v)) for v in values]

    def create_many(self, dataset: Dataset, entries: Sequence[tuple[Sequence[str], str]]) -> list[bool]:
        """BatchCreatePartition, 100 a request, one GetTable for all; False where the partition exists."""
        glue = aws.client("glue")
        table_sd = glue.get_table(DatabaseName=self.database, Name=dataset.name)["Table"]["StorageDescriptor"]
        existing: set[tuple[str, ...]] = set()
        for i in range(0, len(entries), 100):
            inputs = [
                {"Values": list(values), "StorageDescriptor": _partition_sd(table_sd, location)}
                for values, location in entries[i : i + 100]
            ]
            resp = glue.batch_create_partition(
                DatabaseName=self.database, TableName=dataset.name, PartitionInputList=inputs
            )
            for error in resp.get("Errors", []):
                code = error.get("ErrorDetail", {}).get("ErrorCode", "")
                if code != "AlreadyExistsException":
                    raise RuntimeError(
                        f"glue {self.database}.{dataset.name}: creating partition {error.get('PartitionValues')} "
                        f"failed: {code} {error.get('ErrorDetail', {}).get('ErrorMessage', '')}"
                    )
                existing.add(tuple(error.get("PartitionValues", [])))
        return [tuple(values) not in existing for values, _ in entries]

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
