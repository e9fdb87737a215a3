"""Ingest end to end on the local platform: S3 → EventBridge → SQS → in-process function → raw + events."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.conftest import Platform, etl

CSV = b"customer_id,name,email,phone,country,signup_date\n1,Ada,ada@example.com,+4412345,GB,2024-01-05\n"


def land(p: Platform, key: str, body: bytes = CSV, **extra) -> dict:
    s3 = p.client("s3")
    s3.put_object(Bucket=p.out("landingBucket"), Key=key, Body=body, **extra)
    return s3.head_object(Bucket=p.out("landingBucket"), Key=key)


def s3_event_for(p: Platform, key: str) -> dict:
    """The forwarded S3 event the platform bus delivered for a landing key."""
    return p.wait_for(lambda evs: next((e for e in evs if e["source"] == "aws.s3"
                                         and e["detail"]["object"]["key"] == key), None))


def unique(prefix: str = "customers") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:8]}"


def test_landed_file_is_copied_raw_and_announced(platform: Platform) -> None:
    key = f"{unique()}/batch-1.csv"
    land(platform, key, ContentType="text/csv", Metadata={"producer": "crm"})
    (event,) = platform.wait_for(lambda _: platform.events_for("RawObjectStored", source_key=key))
    d = event["detail"]
    assert d["dataset"] == "customers" and d["size"] == len(CSV) and d["source_bucket"] == platform.out("landingBucket")
    raw = platform.client("s3").get_object(Bucket=d["raw_bucket"], Key=d["raw_key"])
    assert raw["Body"].read() == CSV
    assert raw["ContentType"] == "text/csv"
    assert raw["Metadata"]["producer"] == "crm" and raw["Metadata"]["etl-object-id"] == d["object_id"]
    assert d["raw_key"].startswith("customers/received=")


def test_raw_copy_is_listable_with_the_standard_endpoint_variable(platform: Platform) -> None:
    """What `aws s3 ls` does with AWS_ENDPOINT_URL set: boto3 picks the variable up by itself."""
    import subprocess
    import sys

    key = f"{unique()}/listing.csv"
    land(platform, key)
    (event,) = platform.wait_for(lambda _: platform.events_for("RawObjectStored", source_key=key), timeout=10)
    code = ("import boto3,sys; r=boto3.client('s3').list_objects_v2(Bucket=sys.argv[1]);"
            "print('\\n'.join(o['Key'] for o in r.get('Contents', [])))")
    env = {**platform.cli_env, **platform.state.client_env()}
    listing = subprocess.run([sys.executable, "-c", code, platform.out("rawBucket")], env=env,
                             capture_output=True, text=True, check=True).stdout
    assert event["detail"]["raw_key"] in listing.splitlines()


def test_duplicate_delivery_yields_one_copy_and_one_event(platform: Platform) -> None:
    key = f"{unique()}/dup.csv"
    land(platform, key)
    envelope = s3_event_for(platform, key)
    platform.wait_for(lambda _: platform.events_for("RawObjectStored", source_key=key))
    queue = platform.state.functions["etl-local-ingest"]["mappings"][0]["queue_url"]
    sqs = platform.client("sqs")
    for _ in range(3):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(envelope))
    platform.wait_drained(queue)  # every duplicate handled (deleted), so any second copy or event exists by now
    assert len(platform.events_for("RawObjectStored", source_key=key)) == 1
    raw_key = platform.events_for("RawObjectStored", source_key=key)[0]["detail"]["raw_key"]
    versions = platform.client("s3").list_object_versions(Bucket=platform.out("rawBucket"), Prefix=raw_key)
    assert len(versions.get("Versions", [])) == 1, "a duplicate delivery copied the object again"


def dlq_messages(p: Platform, queue: str = "etl-local-ingest-dlq") -> list[dict]:
    sqs = p.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                               VisibilityTimeout=1).get("Messages", [])


def status_items(p: Platform) -> dict[str, dict]:
    from contracts import progress

    return {r["object_id"]: r for r in progress.list_objects(p.client("dynamodb"), p.out("stateTable"))}


def test_a_version_that_no_longer_exists_is_rejected_at_once_and_never_dead_lettered(platform: Platform) -> None:
    """Permanent (docs/design/failures.md): ObjectRejected with the reason, a status record, no DLQ message."""
    key = f"{unique()}/poison.csv"
    land(platform, key)
    envelope = s3_event_for(platform, key)
    platform.wait_for(lambda _: platform.events_for("RawObjectStored", source_key=key))
    poisoned = json.loads(json.dumps(envelope))
    poisoned["id"] = str(uuid.uuid4())
    poisoned["detail"]["object"]["version-id"] = "no-such-version"  # head/copy of this version fails
    queue = platform.state.functions["etl-local-ingest"]["mappings"][0]["queue_url"]
    platform.client("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps(poisoned))

    def rejected(_: list) -> list:
        return [e for e in platform.events_for("ObjectRejected", source_key=key) if "no longer exists" in
                e["detail"]["reason"]]

    (event,) = platform.wait_for(rejected, timeout=30)
    assert event["detail"]["raw_key"] is None
    assert status_items(platform)[event["detail"]["object_id"]]["stage"] == "rejected"
    assert all(json.loads(m["Body"])["id"] != poisoned["id"] for m in dlq_messages(platform))
    body = platform.client("s3").get_object(Bucket=platform.out("landingBucket"), Key=key)["Body"].read()
    assert body == CSV


def test_an_unreadable_message_retries_then_reaches_the_dlq_with_a_status_record(platform: Platform) -> None:
    """Transient path: retried, dead-lettered after the last attempt, and `etl status` says why."""
    sqs = platform.client("sqs")
    queue = platform.state.functions["etl-local-ingest"]["mappings"][0]["queue_url"]
    marker = str(uuid.uuid4())
    sent = sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"id": marker, "detail": {"no": "object"}}))

    def in_dlq(_events: list) -> list:
        return [m for m in dlq_messages(platform) if json.loads(m["Body"])["id"] == marker]

    (dead,) = platform.wait_for(in_dlq, timeout=40)
    assert int(dead["Attributes"]["ApproximateReceiveCount"]) >= 3
    item = platform.wait_for(lambda _: status_items(platform).get(f"message-{sent['MessageId']}"), timeout=10)
    assert item["stage"] == "failed" and "unreadable message" in item["reason"]


@pytest.mark.parametrize(
    "key",
    ["customers/with space/file name.csv", "customers/plus+sign/a+b.csv", "customers/ünïcødé/日本語.csv",
     "customers/mixed + space%20literal.csv"],
)
def test_awkward_but_valid_keys_are_ingested_exactly(platform: Platform, key: str) -> None:
    key = key.replace("customers/", f"{unique()}/", 1)
    land(platform, key)
    (event,) = platform.wait_for(lambda _: platform.events_for("RawObjectStored", source_key=key))
    raw = platform.client("s3").get_object(Bucket=event["detail"]["raw_bucket"], Key=event["detail"]["raw_key"])
    assert raw["Body"].read() == CSV
    assert event["detail"]["raw_key"].endswith(key.split("/", 2)[2])


def test_form_encoded_keys_from_s3_notifications_are_resolved(platform: Platform) -> None:
    """S3 notifications encode a space as '+': the handler finds the real key and keeps it exact."""
    folder = unique()
    key = f"{folder}/a b.csv"
    land(platform, key)
    envelope = json.loads(json.dumps(s3_event_for(platform, key)))
    platform.wait_for(lambda _: platform.events_for("RawObjectStored", source_key=key))
    envelope["detail"]["object"]["key"] = f"{folder}/a+b.csv"
    envelope["detail"]["object"]["etag"] = "form-encoded-redelivery"
    queue = platform.state.functions["etl-local-ingest"]["mappings"][0]["queue_url"]
    platform.client("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps(envelope))
    def two_stored(_events: list) -> list | None:
        stored = platform.events_for("RawObjectStored", source_key=key)
        return stored if len(stored) == 2 else None

    both = platform.wait_for(two_stored)
    assert both[0]["detail"]["object_id"] == both[1]["detail"]["object_id"], "same object version, same lineage id"
    assert not platform.events_for("RawObjectStored", source_key=f"{folder}/a+b.csv")
    assert all(json.loads(m["Body"])["id"] != envelope["id"] for m in dlq_messages(platform))


@pytest.mark.parametrize(
    ("key", "body", "reason"),
    [
        ("unknown_dataset/{u}/file.csv", CSV, "unknown dataset 'unknown_dataset'"),
        ("customers/{u}/empty.csv", b"", "object is empty"),
        ("{u}-at-root.csv", CSV, "no dataset folder"),
        ("customers/{u}/bell\x07.csv", CSV, "control characters"),
        ("customers/{u}/../escape.csv", CSV, "'..' path segments"),
    ],
)
def test_rejected_objects_keep_a_raw_copy_and_say_why(platform: Platform, key: str, body: bytes, reason: str) -> None:
    key = key.format(u=uuid.uuid4().hex[:8])
    land(platform, key, body)
    (event,) = platform.wait_for(lambda _: platform.events_for("ObjectRejected", source_key=key))
    d = event["detail"]
    assert reason in d["reason"]
    raw = platform.client("s3").get_object(Bucket=d["raw_bucket"], Key=d["raw_key"])
    assert raw["Body"].read() == body
    assert d["raw_key"].startswith("_rejected/")
    assert not platform.events_for("RawObjectStored", source_key=key)


def test_status_commands_show_objects_resources_and_queues(platform: Platform) -> None:
    key, empty = f"{unique()}/status.csv", f"{unique()}/status-empty.csv"
    land(platform, key)
    land(platform, empty, b"")
    platform.wait_for(lambda _: platform.events_for("RawObjectStored", source_key=key))
    platform.wait_for(lambda _: platform.events_for("ObjectRejected", source_key=empty))
    status = etl("status", env={**platform.cli_env, "COLUMNS": "250"})
    assert status.returncode == 0, status.stderr
    assert "rejected" in status.stdout and ("ingested" in status.stdout or "transformed" in status.stdout)
    local = etl("local", "status", env={**platform.cli_env, "COLUMNS": "250"})
    assert local.returncode == 0, local.stderr
    for expected in ("core-local", "ingest-local", "EventSourceMapping", "runs in-process", "etl-local-ingest-dlq",
                     "not enforced locally"):
        assert expected in local.stdout, expected
