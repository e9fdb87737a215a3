"""Glue tables generated from dataset contracts: columns, partition keys, Parquet SerDe."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from contracts.datasets import Dataset
from contracts.lineage import LINEAGE_COLUMNS

PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def table_columns(ds: Dataset) -> list[tuple[str, str]]:
    """Data columns as Athena sees them: contract columns then the lineage columns."""
    return [(c.name, c.glue_type) for c in ds.columns] + list(LINEAGE_COLUMNS)


def dataset_table(ds: Dataset, database: pulumi.Input[str], lake_bucket: pulumi.Input[str], parent: pulumi.Resource):
    return aws.glue.CatalogTable(
        f"table-{ds.name}",
        name=ds.name,
        database_name=database,
        description=ds.description,
        table_type="EXTERNAL_TABLE",
        parameters={
            "classification": "parquet",
            "EXTERNAL": "TRUE",
            "parquet.compression": ds.storage.compression.upper(),
        },
        partition_keys=[aws.glue.CatalogTablePartitionKeyArgs(name=p.name, type="string") for p in ds.partitioning],
        storage_descriptor=aws.glue.CatalogTableStorageDescriptorArgs(
            location=pulumi.Output.concat("s3://", lake_bucket, f"/{ds.name}/"),
            input_format=PARQUET_INPUT,
            output_format=PARQUET_OUTPUT,
            ser_de_info=aws.glue.CatalogTableStorageDescriptorSerDeInfoArgs(
                serialization_library=PARQUET_SERDE, parameters={"serialization.format": "1"}
            ),
            columns=[
                aws.glue.CatalogTableStorageDescriptorColumnArgs(name=n, type=t) for n, t in table_columns(ds)
            ],
        ),
        opts=pulumi.ResourceOptions(parent=parent),
    )
