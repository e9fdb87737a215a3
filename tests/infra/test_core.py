"""The core stack: bus, archive, forwarding, buckets and their lifecycle, catalog, tables."""

from __future__ import annotations

import json

import pytest

from contracts.datasets import load_datasets
from tests.infra.harness import Stack, build


def test_bus_archive_and_landing_forwarding(core: Stack) -> None:
    bus = core.one("aws:cloudwatch/eventBus:EventBus", "platform-bus")
    assert bus.inputs["name"] == "etl-dev-bus"
    archive = core.one("aws:cloudwatch/eventArchive:EventArchive", "platform-archive")
    assert archive.inputs["eventSourceArn"].endswith("etl-dev-bus")
    assert json.loads(archive.inputs["eventPattern"]) == {"detail-type": [{"anything-but": ["ErasureRequested"]}]}, (
        "the archive must not keep subject ids in clear")
    rule = core.one("aws:cloudwatch/eventRule:EventRule", "forward-landing")
    assert rule.inputs["eventBusName"] == "default"
    pattern = json.loads(rule.inputs["eventPattern"])
    assert pattern == {"source": ["aws.s3"], "detail-type": ["Object Created"],
                       "detail": {"bucket": {"name": ["etl-dev-landing-123456789012"]}}}
    target = core.one("aws:cloudwatch/eventTarget:EventTarget", "forward-landing-target")
    assert target.inputs["arn"].endswith("etl-dev-bus") and target.inputs["roleArn"]
    notification = core.one("aws:s3/bucketNotification:BucketNotification", "landing-to-eventbridge")
    assert notification.inputs["eventbridge"] is True


def test_rewritten_buckets_are_versioned(core: Stack) -> None:
    versioned = {v.name.removesuffix("-versioning") for v in core.of_type("aws:s3/bucketVersioning:BucketVersioning")}
    assert versioned == {"raw", "lake", "quarantine"}


def _rules(stack: Stack, bucket: str) -> list[dict]:
    return stack.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                     f"{bucket}-lifecycle").inputs["rules"]


def test_raw_ttl_defaults_to_30_days(core: Stack) -> None:
    (rule,) = _rules(core, "raw")
    assert rule["expiration"]["days"] == 30
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 3


def test_raw_ttl_comes_from_config() -> None:
    stack = build("core-test", {"rawTtlDays": 11, "noncurrentVersionDays": 2})
    (rule,) = _rules(stack, "raw")
    assert rule["expiration"]["days"] == 11
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 2


def test_state_tables_are_on_demand_with_ttl(core: Stack) -> None:
    state = core.one("aws:dynamodb/table:Table", "state")
    assert (state.inputs["hashKey"], state.inputs["rangeKey"]) == ("pk", "sk")
    assert state.inputs["ttl"] == {"attributeName": "expires_at", "enabled": True}
    idem = core.one("aws:dynamodb/table:Table", "idempotency")
    assert idem.inputs["ttl"]["attributeName"] == "expiration"


@pytest.mark.parametrize("name", sorted(load_datasets()))
def test_glue_table_matches_contract(core: Stack, name: str) -> None:
    ds = load_datasets()[name]
    table = core.one("aws:glue/catalogTable:CatalogTable", f"table-{name}")
    sd = table.inputs["storageDescriptor"]
    columns = [(c["name"], c["type"]) for c in sd["columns"]]
    assert columns[: len(ds.columns)] == [(c.name, c.glue_type) for c in ds.columns]
    assert [c for c, _ in columns[len(ds.columns):]] == ["_source_object_id", "_source_line"]
    assert [p["name"] for p in table.inputs["partitionKeys"]] == list(ds.partition_names)
    assert sd["serDeInfo"]["serializationLibrary"].endswith("ParquetHiveSerDe")
    assert sd["location"] == f"s3://etl-dev-lake-123456789012/{name}/"
    assert table.inputs["databaseName"] == "etl_dev"


def test_exports_stable_names(core: Stack) -> None:
    assert set(core.run.outputs) >= {"busName", "busArn", "landingBucket", "rawBucket", "lakeBucket",
                                     "quarantineBucket", "glueDatabase", "stateTable", "idempotencyTable",
                                     "alertsTopicArn"}


def test_unknown_component_fails_clearly() -> None:
    with pytest.raises(Exception, match="component one of core, ingest"):
        build("warehouse-dev")


def test_alert_email_subscribes_when_configured() -> None:
    stack = build("core-test", {"alertEmail": "oncall@example.com"})
    sub = stack.one("aws:sns/topicSubscription:TopicSubscription", "alerts-email")
    assert sub.inputs["protocol"] == "email" and sub.inputs["endpoint"] == "oncall@example.com"


def test_athena_workgroup_is_enforced_engine_v3_with_a_cutoff(core: Stack) -> None:
    wg = core.one("aws:athena/workgroup:Workgroup", "athena")
    assert wg.inputs["name"] == "etl-dev"
    conf = wg.inputs["configuration"]
    assert conf["enforceWorkgroupConfiguration"] is True
    assert conf["engineVersion"]["selectedEngineVersion"] == "Athena engine version 3"
    assert conf["bytesScannedCutoffPerQuery"] == 10 * 1024**3
    assert conf["resultConfiguration"]["outputLocation"] == "s3://etl-dev-results-123456789012/athena/"
    (rule,) = _rules(core, "results")
    assert rule["expiration"]["days"] == 7


def test_athena_cutoff_from_config() -> None:
    wg = build("core-test", {"athenaBytesScannedCutoff": 1024**3}).one("aws:athena/workgroup:Workgroup", "athena")
    assert wg.inputs["configuration"]["bytesScannedCutoffPerQuery"] == 1024**3
