"""No restorable subject id: the vault, the tables and the bus archive, against moto server.

The tables are made as the program declares them (the erasure and core stacks run under the recording
mocks; point-in-time recovery switched on where they ask for it), the functions' configuration is the
one the program gives them, and the bus has a stand-in for core's archive: a rule with the archive's own
event pattern feeding a queue. A request then goes through intake, a run and its workers. While it is
open, every table holding the subject id must be one that no backup can restore; once it is finished, no
item of any table and no event the archive would keep holds the id.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from contracts import aws, layout
from contracts import events as contract_events
from contracts.commits import PartitionCommitter, PartitionRef
from contracts.datasets import load_datasets
from etl.local.program import Registered, run_stack
from etl.local.recording import RecordingBackend
from services.erasure import intake, worker
from services.erasure.config import Config
from services.erasure.engine import Engine, Ports
from services.erasure.model import State
from services.erasure.store import Store
from services.erasure.workspace import Workspace
from services.transform.core import transform
from services.transform.parquet import file_name, parquet_bytes
from services.transform.partition import partition_path
from tests.fakes.catalog import create_dataset_table

DATASETS = load_datasets()
SALT = b"vault-test-salt-0123456789"
SUBJECT = random.Random(uuid.uuid4().int).randrange(600_000_000, 699_999_999)  # nine digits: a search means it
OTHERS = [SUBJECT + 1, SUBJECT + 2]


@dataclass
class Platform:
    cfg: Config
    engine: Engine
    worker: worker.Worker
    tables: dict[str, bool]  # every table of the environment → point-in-time recovery on?
    archived: str  # queue fed by the archive's pattern
    everything: str  # queue fed by every platform event
    work: list[dict[str, Any]] = field(default_factory=list)
    ticks: list[dict[str, Any]] = field(default_factory=list)


def declared(stack: str, refs: dict[str, Any]) -> tuple[list[Registered], dict[str, Any]]:
    run = run_stack(stack, RecordingBackend(), {}, refs)
    return run.resources, run.outputs


def _create_table(ddb: Any, inputs: dict[str, Any]) -> bool:
    keys = [{"AttributeName": inputs["hashKey"], "KeyType": "HASH"}]
    if inputs.get("rangeKey"):
        keys.append({"AttributeName": inputs["rangeKey"], "KeyType": "RANGE"})
    ddb.create_table(TableName=inputs["name"], BillingMode="PAY_PER_REQUEST", KeySchema=keys,
                     AttributeDefinitions=[{"AttributeName": a["name"], "AttributeType": a["type"]}
                                           for a in inputs["attributes"]])
    pitr = bool((inputs.get("pointInTimeRecovery") or {}).get("enabled"))
    if pitr:
        ddb.update_continuous_backups(TableName=inputs["name"],
                                      PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    return pitr


def _queue_for(bus: str, name: str, pattern: dict[str, Any]) -> str:
    sqs, ev = aws.client("sqs"), aws.client("events")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    ev.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))
    ev.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    return url


@pytest.fixture(scope="module")
def platform(moto_endpoint: str) -> Iterator[Platform]:
    saved = dict(os.environ)
    os.environ.update({"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    core, core_out = declared("core-local", {})
    erasure, _ = declared("erasure-local", {"core-local": core_out})
    ddb, s3, glue = aws.client("dynamodb"), aws.client("s3"), aws.client("glue")
    tables = {r.inputs["name"]: _create_table(ddb, r.inputs)
              for r in [*core, *erasure] if r.type == "aws:dynamodb/table:Table"}
    for r in [*core, *erasure]:
        if r.type == "aws:s3/bucket:Bucket":
            s3.create_bucket(Bucket=r.inputs["bucket"])
        elif r.type == "aws:s3/bucketVersioning:BucketVersioning":
            s3.put_bucket_versioning(Bucket=r.inputs["bucket"], VersioningConfiguration={"Status": "Enabled"})
    (fn,) = [r for r in erasure if r.type == "aws:lambda/function:Function" and r.name == "erasure-run-function"]
    os.environ.update(fn.inputs["environment"]["variables"])
    os.environ["ERASURE_SUBJECT_SALT"] = SALT.decode()
    cfg = Config.from_environ()
    glue.create_database(DatabaseInput={"Name": cfg.database})
    for ds in DATASETS.values():
        create_dataset_table(glue, cfg.database, ds, cfg.lake_bucket, [(c.name, c.glue_type) for c in ds.columns])
    aws.client("events").create_event_bus(Name=cfg.bus)
    (archive,) = [r for r in core if r.type == "aws:cloudwatch/eventArchive:EventArchive"]
    archived = _queue_for(cfg.bus, "archive-mirror", json.loads(archive.inputs["eventPattern"]))
    everything = _queue_for(cfg.bus, "every-platform-event", {"source": [{"prefix": "etl."}]})
    holder: dict[str, Platform] = {}

    def send(url: str, body: dict[str, Any]) -> None:
        p = holder["p"]
        (p.work if url == cfg.work_queue_url else p.ticks).append(body)

    ports = Ports(send=send, publish=lambda d: contract_events.publish(aws.client("events"), cfg.bus, d),
                  notify=lambda s, m: None, metric=lambda n, v: None)
    committer = PartitionCommitter.on_aws(bucket=cfg.lake_bucket, table_name=cfg.state_table, database=cfg.database)
    engine = Engine(cfg, store=Store.of(cfg), workspace=Workspace(cfg.erasure_bucket), committer=committer,
                    ports=ports, salt=SALT)
    task_worker = worker.Worker.of(cfg, store=Store.of(cfg), workspace=Workspace(cfg.erasure_bucket),
                                   committer=committer, salt=SALT, send=send)
    holder["p"] = Platform(cfg, engine, task_worker, tables, archived, everything)
    yield holder["p"]
    os.environ.clear()
    os.environ.update(saved)


def land(p: Platform, ids: list[int]) -> None:
    """A customers object through transform into the lake (as the transform function commits it)."""
    ds, oid = DATASETS["customers"], uuid.uuid4().hex[:20]
    body = ("customer_id,name,email,phone,country,signup_date\n" + "".join(
        f"{i},Name {i},u{i}@example.com,+4420{i % 10_000_000:07d},GB,2023-02-15\n" for i in ids)).encode()
    key = layout.raw_key("customers", "2024-05-01", oid, "c.csv")
    aws.client("s3").put_object(Bucket=p.cfg.raw_bucket, Key=key, Body=body, Metadata={"etl-object-id": oid})
    committer = p.engine.committer
    for part in transform(ds, body, object_id=oid, source=f"s3://{p.cfg.raw_bucket}/{key}").partitions:
        ref, op = PartitionRef("customers", part.values), f"transform:{oid}:0:{partition_path(part.values)}"
        staged = committer.stage(ref, op, file_name(oid, 0, part.values), parquet_bytes(part.table, ds),
                                 part.table.num_rows)
        committer.append(ref, [staged], op)


def drive(p: Platform, rounds: int = 60) -> None:
    start = True
    for _ in range(rounds):
        if start or p.ticks:
            batch, p.ticks = p.ticks, []
            p.engine.tick(start=start, deadline=time.time() + 300, run_ids=[t["run_id"] for t in batch
                                                                            if t.get("run_id")])
            start = False
        elif p.work:
            msg = p.work.pop(0)
            worker.run_tasks(p.worker, msg["run_id"], worker.message_tasks(msg), deadline=time.time() + 300)
        elif not p.engine.store.active_runs():
            return
        else:
            p.ticks.append({"action": "advance"})
    raise AssertionError("the run did not finish")


def items_holding(needle: str) -> dict[str, int]:
    """Every table of the environment → how many of its items hold the needle anywhere (a full scan)."""
    ddb, out = aws.client("dynamodb"), {}
    for name in ddb.list_tables()["TableNames"]:
        n = sum(needle in json.dumps(item) for page in ddb.get_paginator("scan").paginate(TableName=name)
                for item in page["Items"])
        if n:
            out[name] = n
    return out


def drain(url: str) -> list[str]:
    sqs, bodies = aws.client("sqs"), []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return bodies
        for m in msgs:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_no_backup_and_no_archived_event_keeps_a_finished_requests_ids(platform: Platform) -> None:
    p, sid = platform, str(SUBJECT)
    land(p, [SUBJECT, *OTHERS])
    # the intake path: ErasureRequested on the bus (what the requester policy allows), filed by intake
    detail = contract_events.ErasureRequested(subject_ids=[sid], datasets=["customers"], reason="GDPR art. 17",
                                              requested_by="dpo")
    contract_events.publish(aws.client("events"), p.cfg.bus, [detail])
    req, _ = intake.create(p.cfg, Store.of(p.cfg), SALT, intake.parse(
        detail.model_dump(exclude={"schema_version"}, exclude_none=True), DATASETS),
        caller="test", source="event", idempotency="event:1")

    holding = items_holding(sid)
    assert holding, "while the request is open its ids are in the vault"
    ddb = aws.client("dynamodb")
    restorable = [t for t in holding if ddb.describe_continuous_backups(TableName=t)["ContinuousBackupsDescription"]
                  ["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"]
    assert [t for t, pitr in p.tables.items() if pitr], "the program backs up some table (else this proves nothing)"
    assert not restorable, f"tables with point-in-time recovery hold a subject id: {restorable}"
    assert set(holding) == {p.cfg.vault}, "the vault is the one place an id waits for its run"

    drive(p)
    assert Store.of(p.cfg).get(req.id).state == State.COMPLETED
    assert not items_holding(sid), "a finished request leaves its ids in no table"

    archived, seen = drain(p.archived), drain(p.everything)
    assert any('"ErasureRequested"' in b and sid in b for b in seen), "the request did travel on the bus"
    assert any('"ErasureCompleted"' in b for b in archived), "the archive keeps the platform's other events"
    assert not [b for b in archived if sid in b], "an event the archive keeps holds a subject id"
