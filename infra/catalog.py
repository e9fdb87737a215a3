"""Glue tables generated from dataset contracts: columns, partition keys, Parquet SerDe.

Each table records the contract it was deployed from (version, fingerprint and shape in its
parameters), so the deploy path can compare the next contract with what is deployed. The program
itself refuses a contract whose change against its lock file would break the lake
(contracts/schema_evolution.py): `pulumi up` stops before any resource changes. Partitions already
registered are brought in line by the deploy-time step `etl datasets apply` (docs/design/schema-evolution.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import pulumi
import pulumi_aws as aws

from contracts import schema_evolution as evolution
from contracts.commits import PARQUET_INPUT, PARQUET_OUTPUT, PARQUET_SERDE  # the formats commits copy to partitions
from contracts.datasets import DATASETS_DIR, Dataset


def table_columns(ds: Dataset) -> list[tuple[str, str]]:
    """Data columns as Athena sees them: contract columns then the lineage columns."""
    return evolution.glue_columns(ds)


def table_parameters(ds: Dataset) -> dict[str, str]:
    """Table parameters: Parquet, and the contract (version, fingerprint, shape) the table was deployed from."""
    return {
        "classification": "parquet",
        "EXTERNAL": "TRUE",
        "parquet.compression": ds.storage.compression.upper(),
        **evolution.table_parameters(ds),
    }


def check_contract(ds: Dataset, *, warn: bool = True) -> None:
    """Refuse (before any resource changes) a contract whose change against its lock breaks the lake."""
    report = evolution.against_lock(ds, DATASETS_DIR)
    if report.breaking:
        raise evolution.EvolutionError(report.message())
    if warn and not report.locked and report.base_version is not None:
        pulumi.log.warn(f"{ds.name}: contract changed since lock v{report.base_version} (allowed); record it with "
                        "`etl datasets lock` so files carry its version (`etl deploy` requires it)")


def check_contracts(datasets: Iterable[Dataset]) -> None:
    """Every contract at once, first thing in the core stack: nothing is registered if one would break."""
    problems = []
    for ds in datasets:
        try:
            check_contract(ds)
        except evolution.EvolutionError as exc:
            problems.append(str(exc))
    if problems:
        raise evolution.EvolutionError("\n".join(problems) + "\n(`etl datasets diff` shows every change)")


def dataset_table(ds: Dataset, database: pulumi.Input[str], lake_bucket: pulumi.Input[str], parent: pulumi.Resource):
    check_contract(ds, warn=False)  # the core stack already warned (check_contracts)
    return aws.glue.CatalogTable(
        f"table-{ds.name}",
        name=ds.name,
        database_name=database,
        description=ds.description,
        table_type="EXTERNAL_TABLE",
        parameters=table_parameters(ds),
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
