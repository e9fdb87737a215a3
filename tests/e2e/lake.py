"""Read the lake as a reader does: through each Glue partition's current location, nothing else."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs


def s3fs(endpoint: str) -> fs.S3FileSystem:
    host = endpoint.split("://", 1)[1]
    return fs.S3FileSystem(endpoint_override=host, scheme="http", region="us-east-1", access_key="testing",
                           secret_key="testing")


def read_table(glue: Any, endpoint: str, database: str, table: str) -> tuple[pa.Table, list[str]]:
    """All rows of a table (partition columns added) and the files read."""
    filesystem = s3fs(endpoint)
    parts = []
    files: list[str] = []
    keys = [k["Name"] for k in glue.get_table(DatabaseName=database, Name=table)["Table"]["PartitionKeys"]]
    for page in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table):
        for p in page["Partitions"]:
            location = p["StorageDescriptor"]["Location"].removeprefix("s3://").rstrip("/")
            infos = filesystem.get_file_info(fs.FileSelector(location, recursive=False, allow_not_found=True))
            for info in sorted((i for i in infos if i.type == fs.FileType.File), key=lambda i: i.path):
                t = pq.read_table(info.path, filesystem=filesystem)
                for k, v in zip(keys, p["Values"], strict=True):
                    t = t.append_column(k, pa.array([v] * t.num_rows, pa.string()))
                parts.append(t)
                files.append(info.path)
    if not parts:
        return pa.table({}), files
    return pa.concat_tables(parts, promote_options="default"), files
