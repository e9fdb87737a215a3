"""The ingest stack: queue-driven function wired to core only through the StackReference."""

from __future__ import annotations

import json
import zipfile

from contracts import events
from contracts.settings import IngestSettings
from infra.packaging import build_archive
from tests.infra.harness import CORE_SENTINELS, Stack, build


def test_reads_core_only_from_the_stack_reference(ingest: Stack) -> None:
    fn = ingest.one("aws:lambda/function:Function", "ingest-function")
    env = fn.inputs["environment"]["variables"]
    assert env["RAW_BUCKET"] == CORE_SENTINELS["rawBucket"]
    assert env["BUS_NAME"] == CORE_SENTINELS["busName"]
    assert env["IDEMPOTENCY_TABLE"] == CORE_SENTINELS["idempotencyTable"]
    assert env["STATE_TABLE"] == CORE_SENTINELS["stateTable"]
    assert env["MAX_RECEIVE_COUNT"] == "3", "the handler knows its last attempt (docs/design/failures.md)"
    rule = ingest.one("aws:cloudwatch/eventRule:EventRule", "ingest-rule")
    assert rule.inputs["eventBusName"] == "ref-bus"
    assert json.loads(rule.inputs["eventPattern"]) == events.s3_object_created_pattern("ref-landing")
    everything = json.dumps([r.inputs for r in ingest.resources], default=str)
    assert "etl-dev-raw" not in everything and "etl-dev-landing" not in everything


def test_permissions_are_scoped_to_core_resources(ingest: Stack) -> None:
    by_sid = {st.get("Sid"): st for st in ingest.policies()}
    assert by_sid["ReadLanding"]["Resource"] == ["arn:aws:s3:::ref-landing/*"]
    assert by_sid["WriteRaw"]["Resource"] == ["arn:aws:s3:::ref-raw/*"]
    assert by_sid["Publish"]["Resource"] == [CORE_SENTINELS["busArn"]]
    assert "s3:DeleteObject" not in json.dumps(by_sid), "ingest never deletes anything"


def test_function_runtime_architecture_and_logs(ingest: Stack) -> None:
    fn = ingest.one("aws:lambda/function:Function", "ingest-function")
    assert fn.inputs["runtime"] == "python3.12"
    assert fn.inputs["architectures"] == ["arm64"]
    assert fn.inputs["handler"] == "services.ingest.handler.handler"
    assert fn.inputs["memorySize"] == 512, "a server-side copy: configured memory is what Lambda bills"
    logs = ingest.one("aws:cloudwatch/logGroup:LogGroup", "ingest-logs")
    assert logs.inputs["name"] == "/aws/lambda/etl-dev-ingest" and logs.inputs["retentionInDays"] == 30
    queue = ingest.one("aws:sqs/queue:Queue", "ingest-queue")
    assert queue.inputs["visibilityTimeoutSeconds"] >= 6 * fn.inputs["timeout"]


def test_architecture_and_concurrency_from_config() -> None:
    stack = build("ingest-dev", {"lambdaArchitecture": "x86_64", "maxConcurrency": 7, "maxReceiveCount": 5})
    assert stack.one("aws:lambda/function:Function", "ingest-function").inputs["architectures"] == ["x86_64"]
    mapping = stack.one("aws:lambda/eventSourceMapping:EventSourceMapping", "ingest-mapping")
    assert mapping.inputs["scalingConfig"]["maximumConcurrency"] == 7
    redrive = json.loads(stack.one("aws:sqs/queue:Queue", "ingest-queue").inputs["redrivePolicy"])
    assert redrive["maxReceiveCount"] == 5


def test_archive_is_deterministic_and_clean(tmp_path) -> None:
    first = build_archive("ingest", tmp_path / "a")
    second = build_archive("ingest", tmp_path / "b")
    assert first.sha256_b64 == second.sha256_b64
    names = zipfile.ZipFile(first.path).namelist()
    assert names == sorted(names)
    assert "services/ingest/handler.py" in names and "contracts/events.py" in names
    assert "contracts/datasets/customers.toml" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith("services/") and n.count("/") > 1
                and not n.startswith("services/ingest/")], "only the ingest service is packaged"


def test_dependencies_ship_as_a_layer_built_by_etl_build(ingest: Stack, built_layers) -> None:
    layer = ingest.one("aws:lambda/layerVersion:LayerVersion", "ingest-deps")
    assert layer.inputs["layerName"] == "etl-dev-ingest-deps"
    assert layer.inputs["compatibleArchitectures"] == ["arm64"]
    assert layer.inputs["compatibleRuntimes"] == ["python3.12"]
    fn = ingest.one("aws:lambda/function:Function", "ingest-function")
    assert fn.inputs["layers"] == ["arn:aws:lambda:eu-west-1:123456789012:etl-dev-ingest-deps"]


def test_missing_layer_says_to_run_etl_build(built_layers, monkeypatch) -> None:
    monkeypatch.setenv("ETL_BUILD_DIR", str(built_layers / "nowhere"))
    import pytest

    with pytest.raises(Exception, match="run `etl build ingest --arch arm64` first"):
        build("ingest-dev")


def test_local_env_uses_the_venv_not_a_layer() -> None:
    local = build("ingest-local")
    assert not local.of_type("aws:lambda/layerVersion:LayerVersion")
    assert local.one("aws:lambda/function:Function", "ingest-function").inputs["layers"] == []


def test_the_function_reads_back_the_settings_infra_wrote() -> None:
    """One model (contracts.settings.IngestSettings) names the variables and holds the defaults."""
    stack = build("ingest-dev")
    env = stack.one("aws:lambda/function:Function", "ingest-function").inputs["environment"]["variables"]
    assert not set(IngestSettings.required_env()) - set(env)
    read = IngestSettings.from_environ(env)
    assert read.max_receive_count == 3 and read.env == "dev" and read.raw_bucket
