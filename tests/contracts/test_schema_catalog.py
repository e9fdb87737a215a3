"""The deploy-time catalog step (etl/catalog_sync.py) against Glue and S3 on moto server: a table
deployed at v1 with partitions registered at v1 is brought to v2 whole; breaking changes change nothing."""

from __future__ import annotations

from typing import Any

import boto3
import pyarrow as pa
import pytest

from contracts import aws
from contracts import schema_evolution as ev
from contracts.datasets import DATASETS_DIR, load_datasets
from etl import catalog_sync
from infra.catalog import PARQUET_INPUT, PARQUET_OUTPUT, PARQUET_SERDE

V2 = load_datasets()["usage_events"]
V1 = ev.locked_dataset(V2, 1, DATASETS_DIR)
DB, BUCKET = "etl_test", "lake"
PARTITIONS = 130  # more than one BatchUpdatePartition (100)


@pytest.fixture
def glue(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for k, v in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    client = boto3.client("glue")
    for db in client.get_databases()["DatabaseList"]:
        client.delete_database(Name=db["Name"])
    client.create_database(DatabaseInput={"Name": DB})
    sd = {"Columns": catalog_sync.desired_columns(V1), "Location": f"s3://{BUCKET}/usage_events/",
          "InputFormat": PARQUET_INPUT, "OutputFormat": PARQUET_OUTPUT,
          "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE}}
    client.create_table(DatabaseName=DB, TableInput={
        "Name": "usage_events", "TableType": "EXTERNAL_TABLE", "StorageDescriptor": sd,
        "PartitionKeys": [{"Name": n, "Type": "string"} for n in V2.partition_names],
        "Parameters": {"classification": "parquet", **ev.table_parameters(V1)}})
    for i in range(0, PARTITIONS, 100):
        client.batch_create_partition(DatabaseName=DB, TableName="usage_events", PartitionInputList=[
            {"Values": [f"t{j:03d}", "2024"],
             "StorageDescriptor": {**sd, "Location": f"s3://{BUCKET}/usage_events/tenant=t{j:03d}/event_year=2024/gen=1/"}}
            for j in range(i, min(PARTITIONS, i + 100))])
    return client


def columns(sd: dict) -> list[tuple[str, str]]:
    return [(c["Name"], c["Type"]) for c in sd["Columns"]]


def all_partitions(glue: Any) -> list[dict]:
    return list(catalog_sync.partitions(glue, DB, "usage_events"))


def test_apply_brings_the_table_and_every_partition_to_the_contract(glue: Any) -> None:
    progress: list[int] = []
    report = catalog_sync.apply(glue, DB, V2, on_progress=progress.append)
    assert (report.table_updated, report.partitions, report.partitions_updated) == (True, PARTITIONS, PARTITIONS)
    assert progress == [100, PARTITIONS - 100]
    want = [(n, t) for n, t in ev.glue_columns(V2)]
    table = glue.get_table(DatabaseName=DB, Name="usage_events")["Table"]
    assert columns(table["StorageDescriptor"]) == want and table["Parameters"][ev.TABLE_VERSION] == "2"
    assert table["Parameters"]["classification"] == "parquet", "other parameters are kept"
    for p in all_partitions(glue):
        assert columns(p["StorageDescriptor"]) == want
        assert p["StorageDescriptor"]["Location"].endswith(f"tenant={p['Values'][0]}/event_year=2024/gen=1/")
    again = catalog_sync.apply(glue, DB, V2)
    assert (again.table_updated, again.partitions_updated) == (False, 0), "a second apply has nothing to do"


def test_a_breaking_contract_changes_nothing(glue: Any) -> None:
    catalog_sync.apply(glue, DB, V2)
    before = (glue.get_table(DatabaseName=DB, Name="usage_events")["Table"], all_partitions(glue))
    with pytest.raises(ev.EvolutionError, match="drop plan"):
        catalog_sync.apply(glue, DB, V1)
    assert glue.get_table(DatabaseName=DB, Name="usage_events")["Table"]["StorageDescriptor"] == \
        before[0]["StorageDescriptor"]
    assert [columns(p["StorageDescriptor"]) for p in all_partitions(glue)] == \
        [columns(p["StorageDescriptor"]) for p in before[1]]


def test_changing_the_partitioning_of_a_table_with_data_is_refused(glue: Any) -> None:
    data = V2.model_dump(exclude={"version"})
    data["partitioning"] = [{"name": "tenant", "source": "tenant_id", "transform": "identity"}]
    moved = type(V2).model_validate(data)
    report = catalog_sync.check_deployed(glue, DB, moved)
    assert [c.kind for c in report.breaking] == ["partitioning"]
    with pytest.raises(ev.EvolutionError, match="partitioning"):
        catalog_sync.apply(glue, DB, moved)


class RevertingGlue:
    """A Glue client where a commit, racing the first pass, writes one partition back with the columns it read."""

    def __init__(self, real: Any) -> None:
        self.real, self.reverted = real, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def batch_update_partition(self, **kwargs: Any) -> Any:
        victim = kwargs["Entries"][0]["PartitionValueList"]
        stale = self.real.get_partition(DatabaseName=DB, TableName="usage_events", PartitionValues=victim)
        out = self.real.batch_update_partition(**kwargs)
        if not self.reverted:
            self.reverted += 1
            old = {k: v for k, v in stale["Partition"].items() if k in catalog_sync._PARTITION_INPUT_KEYS}
            self.real.update_partition(DatabaseName=DB, TableName="usage_events", PartitionValueList=victim,
                                       PartitionInput=old)
        return out


def test_a_partition_written_back_by_a_racing_commit_is_caught_by_the_next_pass(glue: Any) -> None:
    racing = RevertingGlue(glue)
    report = catalog_sync.apply(racing, DB, V2)
    assert racing.reverted == 1 and report.passes == 3 and report.partitions_updated == PARTITIONS + 1
    want = [(n, t) for n, t in ev.glue_columns(V2)]
    assert all(columns(p["StorageDescriptor"]) == want for p in all_partitions(glue))


def test_plan_counts_partitions_to_update_and_files_by_version(glue: Any) -> None:
    from services.transform.parquet import parquet_bytes

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    rows = {"event_id": [1], "tenant_id": ["t000"], "user_id": [5], "event_date": [None], "quantity": [1],
            "unit_price": [None], "amount": [None], "_source_object_id": ["o"], "_source_line": [1]}
    from contracts.arrow import lake_schema

    prefix = "usage_events/tenant=t000/event_year=2024/gen=1"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/a.parquet",
                  Body=parquet_bytes(pa.table(rows, schema=lake_schema(V1)), V1))
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/b.parquet",
                  Body=parquet_bytes(pa.table({**rows, "plan": ["x"]}, schema=lake_schema(V2)), V2))
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/_staging-marker", Body=b"")
    plan = catalog_sync.plan(glue, DB, V2, aws.s3_filesystem())
    assert (plan.deployed, plan.table_changes, plan.partitions, plan.partitions_to_update) == \
        (True, True, PARTITIONS, PARTITIONS)
    assert (plan.files, plan.files_by_version) == (2, {"v1": 1, "v2": 1})
    assert sorted(c.kind for c in plan.evolution.changes) == ["add", "widen", "widen", "widen"]


def test_the_deploy_gate_refuses_breaking_and_unlocked_contracts_before_anything(glue: Any) -> None:
    from etl.deploy import DeployError

    notes: list[str] = []
    catalog_sync.deploy_gate("test", {"usage_events": V2}, DATASETS_DIR, notes.append, glue)  # v1 -> v2: allowed
    catalog_sync.apply(glue, DB, V2)  # the table now says v2 …
    with pytest.raises(DeployError, match=r"usage_events: contract change against deployed table \(v2\)"):
        catalog_sync.deploy_gate("test", {"usage_events": V1}, DATASETS_DIR, notes.append, glue)  # … so v1 breaks
    unlocked = V2.model_copy(update={"version": None, "description": "x"})
    data = unlocked.model_dump(exclude={"version"})
    data["columns"] = [*data["columns"], {"name": "coupon", "type": "string"}]
    with pytest.raises(DeployError, match="etl datasets lock usage_events"):
        catalog_sync.deploy_gate("test", {"usage_events": type(V2).model_validate(data)}, DATASETS_DIR,
                                 notes.append, glue)
    assert notes == []


def test_after_deploy_updates_the_partitions_and_says_so(glue: Any) -> None:
    said: list[str] = []
    catalog_sync.after_deploy("test", {"usage_events": V2}, said.append, glue)
    assert said == [f"catalog: usage_events: {PARTITIONS} of {PARTITIONS} partition(s) updated to the table's "
                    "columns (table updated)"]
