"""The deploy-time step that brings a deployed catalog in line with the contracts: `etl datasets apply`.

`pulumi up` updates a Glue table's columns, but the partitions already registered each carry their
own column list, and Athena checks them against the table (HIVE_PARTITION_SCHEMA_MISMATCH when a
type differs). So after the core stack is up, `etl deploy` (and `etl datasets apply` by hand, or
locally where the emulator's tables are written the same way) rewrites every partition whose
columns differ from the table's, 100 per BatchUpdatePartition. Before changing anything it
compares each contract with the table as deployed and refuses a breaking change. A commit that
flips a partition meanwhile may write back the columns it read: passes repeat until one finds
nothing to change. New partitions copy the table's columns when they are created (contracts/commits.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq
from pyarrow import fs as pafs

from contracts import schema_evolution as evolution
from contracts.datasets import Dataset
from contracts.lineage import LINEAGE_COLUMNS

_TABLE_INPUT_KEYS = ("Name", "Description", "Owner", "LastAccessTime", "LastAnalyzedTime", "Retention",
                     "StorageDescriptor", "PartitionKeys", "TableType", "Parameters")
_PARTITION_INPUT_KEYS = ("Values", "LastAccessTime", "StorageDescriptor", "Parameters", "LastAnalyzedTime")
BATCH = 100  # BatchUpdatePartition's limit
MAX_PASSES = 5


class CatalogError(RuntimeError):
    """The catalog cannot be brought in line; the message says why and what to do."""


@dataclass
class ApplyReport:
    dataset: str
    table_updated: bool = False
    partitions: int = 0
    partitions_updated: int = 0
    passes: int = 0


@dataclass
class TablePlan:
    """What a contract change does to one deployed table: the `etl datasets diff` view."""

    evolution: evolution.Evolution
    deployed: bool
    table_changes: bool
    partitions: int = 0
    partitions_to_update: int = 0
    files: int = 0
    files_by_version: dict[str, int] = field(default_factory=dict)


def desired_columns(ds: Dataset) -> list[dict[str, str]]:
    return [{"Name": n, "Type": t} for n, t in evolution.glue_columns(ds)]


def _columns(sd: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    return [(c["Name"].lower(), c["Type"].lower().replace(" ", "")) for c in (sd or {}).get("Columns", [])]


def _want(ds: Dataset) -> list[tuple[str, str]]:
    return [(n.lower(), t.lower().replace(" ", "")) for n, t in evolution.glue_columns(ds)]


def get_table(glue: Any, database: str, name: str) -> dict[str, Any] | None:
    try:
        return glue.get_table(DatabaseName=database, Name=name)["Table"]
    except glue.exceptions.EntityNotFoundException:
        return None


def partitions(glue: Any, database: str, name: str) -> Iterator[dict[str, Any]]:
    for page in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=name):
        yield from page["Partitions"]


def holds_data(glue: Any, database: str, table: Mapping[str, Any]) -> bool:
    """A partitioned table holds data once a partition is registered; an unpartitioned one is assumed to."""
    if not table.get("PartitionKeys"):
        return True
    page = glue.get_partitions(DatabaseName=database, TableName=table["Name"], MaxResults=1)
    return bool(page["Partitions"])


def check_deployed(glue: Any, database: str, ds: Dataset) -> evolution.Evolution:
    """The contract against the table as deployed in `database` (a missing table: a new dataset)."""
    table = get_table(glue, database, ds.name)
    data = holds_data(glue, database, table) if table else False
    return evolution.against_table(ds, table, holds_data=data, lineage=[n for n, _ in LINEAGE_COLUMNS])


def plan(glue: Any, database: str, ds: Dataset, filesystem: pafs.FileSystem | None = None) -> TablePlan:
    """What applying the contract would change; with a filesystem, also the files by the version they carry."""
    report = check_deployed(glue, database, ds)
    table = get_table(glue, database, ds.name)
    if table is None:
        return TablePlan(report, False, True)
    want = _want(ds)
    result = TablePlan(report, True, _columns(table.get("StorageDescriptor")) != want)
    for p in partitions(glue, database, ds.name):
        result.partitions += 1
        if _columns(p.get("StorageDescriptor")) != want:
            result.partitions_to_update += 1
        if filesystem is not None:
            location = p["StorageDescriptor"]["Location"].split("://", 1)[-1].rstrip("/")
            selector = pafs.FileSelector(location, recursive=False, allow_not_found=True)
            for info in filesystem.get_file_info(selector):
                if info.type != pafs.FileType.File or info.base_name.startswith(("_", ".")):
                    continue
                with filesystem.open_input_file(info.path) as f:
                    found = evolution.file_contract(pq.read_metadata(f).metadata)
                key = f"v{found.version}" if found.version else "unrecorded"
                result.files += 1
                result.files_by_version[key] = result.files_by_version.get(key, 0) + 1
    return result


def apply(glue: Any, database: str, ds: Dataset, *, update_table: bool = True,
          on_progress: Callable[[int], Any] | None = None) -> ApplyReport:
    """Bring the table (when `update_table`) and every registered partition in line with the contract."""
    table = get_table(glue, database, ds.name)
    if table is None:
        raise CatalogError(f"table {database}.{ds.name} is not deployed: deploy the core stack first "
                           "(`etl deploy ENV`, locally `etl local up`)")
    report_ = evolution.against_table(ds, table, holds_data=holds_data(glue, database, table),
                                      lineage=[n for n, _ in LINEAGE_COLUMNS])
    if report_.breaking:
        raise evolution.EvolutionError(report_.message())
    if [k["Name"] for k in table.get("PartitionKeys", [])] != list(ds.partition_names):
        raise CatalogError(f"{ds.name}: partition keys differ from the contract's and the table holds no data: "
                           "`etl deploy` re-creates the table with the new keys")
    out = ApplyReport(ds.name)
    want = desired_columns(ds)
    params = {**(table.get("Parameters") or {}), **evolution.table_parameters(ds)}
    if update_table and (_columns(table.get("StorageDescriptor")) != _want(ds) or params != table.get("Parameters")):
        data = {k: v for k, v in table.items() if k in _TABLE_INPUT_KEYS}
        data["StorageDescriptor"] = {**data["StorageDescriptor"], "Columns": want}
        data["Parameters"] = params
        glue.update_table(DatabaseName=database, TableInput=data)
        out.table_updated = True
    for _ in range(MAX_PASSES):
        out.passes += 1
        stale = [p for p in partitions(glue, database, ds.name) if _columns(p.get("StorageDescriptor")) != _want(ds)]
        if out.passes == 1:
            out.partitions = sum(1 for _ in partitions(glue, database, ds.name))
        if not stale:
            return out
        for i in range(0, len(stale), BATCH):
            _update(glue, database, ds.name, stale[i : i + BATCH], want)
            out.partitions_updated += len(stale[i : i + BATCH])
            if on_progress:
                on_progress(len(stale[i : i + BATCH]))
    raise CatalogError(f"{ds.name}: partitions kept changing back after {MAX_PASSES} passes (a writer restoring "
                       "old columns?); run `etl datasets apply` again")


def _update(glue: Any, database: str, name: str, parts: Sequence[Mapping[str, Any]], want: list[dict]) -> None:
    entries = []
    for p in parts:
        data = {k: v for k, v in p.items() if k in _PARTITION_INPUT_KEYS}
        data["StorageDescriptor"] = {**data["StorageDescriptor"], "Columns": want}
        entries.append({"PartitionValueList": list(p["Values"]), "PartitionInput": data})
    errors = glue.batch_update_partition(DatabaseName=database, TableName=name, Entries=entries).get("Errors") or []
    if errors:
        first = errors[0].get("ErrorDetail", {})
        raise CatalogError(f"{name}: {len(errors)} partition(s) not updated "
                           f"({first.get('ErrorCode')}: {first.get('ErrorMessage')}); run `etl datasets apply` again")


# -- the deploy path ------------------------------------------------------------------------------------------
def deploy_gate(env: str, datasets: Mapping[str, Dataset], directory: Any, on_output: Callable[[str], Any],
                glue: Any = None, *, require_locked: bool = True) -> None:
    """Before `pulumi up`: refuse a contract that breaks its lock or the env's deployed table, or is not locked.

    Raises etl.deploy.DeployError naming every problem and what to do; nothing has been deployed then.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from etl.deploy import DeployError
    from etl.query import database_name

    problems: list[str] = []
    for ds in datasets.values():
        report = evolution.against_lock(ds, directory)
        if report.breaking:
            problems.append(report.message())
        elif require_locked and not report.locked:
            problems.append(f"{ds.name}: the contract changed since {report.baseline} (allowed) but is not locked: "
                            f"run `etl datasets lock {ds.name}` and commit the lock, so files record v{report.version}")
    database = database_name(env)
    try:
        client = glue or _glue()
        for ds in datasets.values():
            deployed = check_deployed(client, database, ds)
            if deployed.breaking:
                problems.append(deployed.message())
    except (BotoCoreError, ClientError) as exc:  # first deploy (no database yet) or no credentials: lock only
        on_output(f"note: could not read the deployed catalog {database} ({type(exc).__name__}); contracts were "
                  "checked against their lock files only")
    if problems:
        raise DeployError("contract changes refused before deploying anything:\n" + "\n".join(problems) +
                          "\n(`etl datasets diff --env " + env + "` shows every change)")


def after_deploy(env: str, datasets: Mapping[str, Dataset], on_output: Callable[[str], Any], glue: Any = None) -> None:
    """After the core stack is up: every registered partition gets its table's columns (see module doc)."""
    from etl.query import database_name

    client, database = glue or _glue(), database_name(env)
    for ds in datasets.values():
        r = apply(client, database, ds)
        if r.table_updated or r.partitions_updated:
            on_output(f"catalog: {ds.name}: {r.partitions_updated} of {r.partitions} partition(s) updated to the "
                      f"table's columns{' (table updated)' if r.table_updated else ''}")


def _glue() -> Any:
    from contracts import aws

    return aws.client("glue")
