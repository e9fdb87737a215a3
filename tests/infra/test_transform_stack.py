"""The transform stack: contract-built rule, one object per invocation, scoped lake/Glue permissions."""

from __future__ import annotations

import json

from contracts import events
from contracts.settings import TransformSettings
from tests.infra.harness import CORE_SENTINELS, Stack, build


def test_rule_pattern_comes_from_the_event_contract(transform: Stack) -> None:
    rule = transform.one("aws:cloudwatch/eventRule:EventRule", "transform-rule")
    assert rule.inputs["eventBusName"] == "ref-bus"
    assert json.loads(rule.inputs["eventPattern"]) == events.pattern(events.RawObjectStored, events.ChunkPlanned)


def test_one_object_per_invocation_within_the_15_minute_wall(transform: Stack) -> None:
    mapping = transform.one("aws:lambda/eventSourceMapping:EventSourceMapping", "transform-mapping")
    assert mapping.inputs["batchSize"] == 1
    fn = transform.one("aws:lambda/function:Function", "transform-function")
    assert fn.inputs["timeout"] <= 900
    env = fn.inputs["environment"]["variables"]
    assert env["LAKE_BUCKET"] == CORE_SENTINELS["lakeBucket"] and env["GLUE_DATABASE"] == "ref_db"
    assert env["CHUNK_BYTES"] == str(128 * 1024 * 1024)
    assert (env["MIMALLOC_PURGE_DELAY"], env["MIMALLOC_ALLOW_THP"]) == ("-1", "0")  # as bench/transform_bench.py


def test_chunk_size_from_config() -> None:
    fn = build("transform-dev", {"chunkMb": 64}).one("aws:lambda/function:Function", "transform-function")
    assert fn.inputs["environment"]["variables"]["CHUNK_BYTES"] == str(64 * 1024 * 1024)


def test_permissions_scoped(transform: Stack) -> None:
    by_sid = {st["Sid"]: st for st in transform.policies() if "Sid" in st}
    assert by_sid["ReadRaw"]["Resource"] == ["arn:aws:s3:::ref-raw/*"]
    assert by_sid["Quarantine"]["Resource"] == ["arn:aws:s3:::ref-quarantine/*"]
    assert "s3:DeleteObject" not in by_sid["ReadRaw"]["Action"], "transform never deletes raw copies"
    glue = by_sid["RegisterPartitions"]["Resource"]
    assert glue[1].endswith(":database/ref_db") and glue[2].endswith(":table/ref_db/*")


def test_the_function_reads_back_the_settings_infra_wrote(transform: Stack) -> None:
    """One model (contracts.settings.TransformSettings) names the variables and holds the defaults."""
    env = transform.one("aws:lambda/function:Function", "transform-function").inputs["environment"]["variables"]
    assert not set(TransformSettings.required_env()) - set(env)
    read = TransformSettings.from_environ(env)
    assert (read.lake, read.chunk_bytes, read.max_receive_count) == (CORE_SENTINELS["lakeBucket"], 128 * 1024**2, 3)
