"""The erasure engine's test world on moto server: buckets, state table, Glue tables, an engine driven in-process.

Shared by the engine, verification, copies, observability and transform-failure tests (fixture `world` in
conftest.py): data is landed through the real transform and committer, ticks and tasks are delivered from two
in-memory queues, and a crash can be injected at any step of a run.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import aws, layout
from contracts.commits import PartitionCommitter, PartitionRef
from contracts.datasets import load_datasets
from services.erasure import intake, worker
from services.erasure.config import Config
from services.erasure.engine import Engine, Ports
from services.erasure.store import Store
from services.erasure.workspace import Workspace
from services.transform.core import transform
from services.transform.parquet import file_name, parquet_bytes
from services.transform.partition import partition_path
from tests.fakes.catalog import create_dataset_table

DATASETS = load_datasets()
SALT = b"engine-test-salt-0123456789"
DAY = "2024-05-01"
#: a run whose verification fails is attempted again up to this many times (the default is 3): two attempts still
#: take every failing run through a retry and then give up, and each attempt is a whole find-rewrite-purge-verify
MAX_ATTEMPTS = 2


class Crash(RuntimeError):
    pass


@dataclass
class World:
    cfg: Config
    engine: Engine
    worker: worker.Worker
    store: Store
    committer: PartitionCommitter
    work: list[dict[str, Any]] = field(default_factory=list)
    ticks: list[dict[str, Any]] = field(default_factory=list)
    published: list[Any] = field(default_factory=list)
    alerts: list[tuple[str, str]] = field(default_factory=list)
    crash_at: str | None = None
    crashes: int = 0
    steps: list[str] = field(default_factory=list)

    def hook(self, step: str) -> None:
        self.steps.append(step)
        if self.crash_at == step:
            self.crash_at = None
            self.crashes += 1
            raise Crash(step)

    # -- data -----------------------------------------------------------------------------------------
    def land(self, dataset: str, body: bytes, name: str, gz: bool = False) -> str:
        ds = DATASETS[dataset]
        oid = uuid.uuid4().hex[:20]
        key = layout.raw_key(dataset, DAY, oid, name)
        s3 = aws.client("s3")
        landing_key = f"{dataset}/{name}"
        data = gzip.compress(body) if gz else body
        etag = s3.put_object(Bucket=self.cfg.landing_bucket, Key=landing_key, Body=data)["ETag"]
        s3.put_object(Bucket=self.cfg.raw_bucket, Key=key, Body=data, Metadata={
            "etl-object-id": oid, "etl-source-bucket": self.cfg.landing_bucket, "etl-source-key": landing_key,
            "etl-source-etag": etag})
        result = transform(ds, data, object_id=oid, source=f"s3://{self.cfg.raw_bucket}/{key}")
        for part in result.partitions:
            ref = PartitionRef(dataset, part.values)
            op = f"transform:{oid}:0:{partition_path(part.values)}"
            staged = self.committer.stage(ref, op, file_name(oid, 0, part.values), parquet_bytes(part.table, ds),
                                          part.table.num_rows)
            self.committer.append(ref, [staged], op)
        if result.rows_quarantined:
            sink = pa.BufferOutputStream()
            pq.write_table(result.quarantine, sink, compression="zstd")
            s3.put_object(Bucket=self.cfg.quarantine_bucket, Key=layout.quarantine_key(dataset, oid, 0),
                          Body=sink.getvalue().to_pybytes())
        return oid

    def lake_rows(self, dataset: str) -> Counter:
        """Every row a reader sees (through the Glue locations), as a multiset of tuples."""
        glue, fs = aws.client("glue"), aws.s3_filesystem()
        rows: Counter = Counter()
        for page in glue.get_paginator("get_partitions").paginate(DatabaseName=self.cfg.database,
                                                                  TableName=dataset):
            for p in page["Partitions"]:
                loc = p["StorageDescriptor"]["Location"].removeprefix("s3://")
                # a partition whose every row was erased has an empty generation: no object at all
                for info in fs.get_file_info(pa.fs.FileSelector(loc, allow_not_found=True)):
                    t = pq.read_table(info.path, filesystem=fs)
                    rows.update(tuple(r.values()) for r in t.to_pylist())
        return rows

    def generations(self, dataset: str) -> dict[tuple[str, ...], str]:
        glue = aws.client("glue")
        return {tuple(p["Values"]): p["StorageDescriptor"]["Location"]
                for page in glue.get_paginator("get_partitions").paginate(DatabaseName=self.cfg.database,
                                                                          TableName=dataset)
                for p in page["Partitions"]}

    # -- requests and the loop ------------------------------------------------------------------------
    def request(self, ids: list[str], datasets: list[str] | None = None, client: str | None = None) -> str:
        data = {"subject_ids": ids, "reason": "GDPR art. 17", "requested_by": "dpo", "ticket": "T-1",
                **({"datasets": datasets} if datasets else {}), **({"client_request_id": client} if client else {})}
        body = intake.parse(data, DATASETS)
        req, _ = intake.create(self.cfg, self.store, SALT, body, caller="test", source="api", idempotency=client)
        return req.id

    def drive(self, *, start: bool = True, rounds: int = 60) -> None:
        """Deliver ticks and tasks until the queues are empty; a crash leaves its message for redelivery."""
        pending_start = start
        for _ in range(rounds):
            if pending_start or self.ticks:
                batch, self.ticks = self.ticks, []
                try:
                    self.engine.tick(start=pending_start, deadline=time.time() + 300,
                                     run_ids=[t["run_id"] for t in batch if t.get("run_id")])
                    pending_start = False
                except Crash:
                    self.ticks = batch + self.ticks
                continue
            if self.work:
                msg = self.work.pop(0)
                try:
                    worker.run_tasks(self.worker, msg["run_id"], worker.message_tasks(msg),
                                     deadline=time.time() + 300, hook=self.hook)
                except Crash:
                    self.work.append(msg)
                continue
            if not self.store.active_runs():
                return
            self.ticks.append({"action": "advance"})  # the schedule fires
        raise AssertionError(f"the run did not finish; steps: {self.steps[-20:]}")


def make_world(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> World:
    """Buckets, state table and Glue database of one test, and an engine driven in-process."""
    for k, v in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    tag = uuid.uuid4().hex[:8]
    s3, ddb, glue = aws.client("s3"), aws.client("dynamodb"), aws.client("glue")
    buckets = {p: f"{p}-{tag}" for p in ("lake", "raw", "quarantine", "landing", "erasure")}
    for purpose, name in buckets.items():
        s3.create_bucket(Bucket=name)
        if purpose in ("lake", "raw", "quarantine"):
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    table = f"state-{tag}"
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])
    database = f"db_{tag}"
    glue.create_database(DatabaseInput={"Name": database})
    for ds in DATASETS.values():
        create_dataset_table(glue, database, ds, buckets["lake"], [(c.name, c.glue_type) for c in ds.columns])
    cfg = Config(env="test", bus="bus", lake_bucket=buckets["lake"], raw_bucket=buckets["raw"],
                 quarantine_bucket=buckets["quarantine"], landing_bucket=buckets["landing"],
                 erasure_bucket=buckets["erasure"], state_table=table, database=database, run_queue_url="run",
                 work_queue_url="work", purge_grace_s=0, batch_max_wait_s=3600, max_attempts=MAX_ATTEMPTS)
    store = Store(table)
    committer = PartitionCommitter.on_aws(bucket=cfg.lake_bucket, table_name=table, database=database)
    holder: dict[str, World] = {}

    def send(url: str, body: dict[str, Any]) -> None:
        (holder["w"].work if url == "work" else holder["w"].ticks).append(body)

    ports = Ports(send=send, publish=lambda d: holder["w"].published.extend(d),
                  notify=lambda s, m: holder["w"].alerts.append((s, m)), metric=lambda n, v: None)
    engine = Engine(cfg, store=store, workspace=Workspace(cfg.erasure_bucket), committer=committer, ports=ports,
                    salt=SALT, hook=lambda step: holder["w"].hook(step))
    task_worker = worker.Worker.of(cfg, store=store, workspace=Workspace(cfg.erasure_bucket), committer=committer,
                                   salt=SALT, send=send)
    w = World(cfg, engine, task_worker, store, committer)
    holder["w"] = w
    return w


def customers_csv(ids: list[int], *, bad: list[str] = ()) -> bytes:  # type: ignore[assignment]
    rows = [f"{i},Name {i},u{i}@example.com,+4420{i:07d},GB,2023-{1 + i % 3:02d}-15" for i in ids]
    return ("customer_id,name,email,phone,country,signup_date\n" + "\n".join([*rows, *bad]) + "\n").encode()


def orders_jsonl(pairs: list[tuple[int, int]], *, bad: list[str] = ()) -> bytes:  # type: ignore[assignment]
    lines = [json.dumps({"order_id": o, "customer_id": c, "amount": "10.50", "status": "paid",
                         "order_date": f"2024-0{1 + o % 4}-0{1 + o % 9}"}) for o, c in pairs]
    return ("\n".join([*lines, *bad]) + "\n").encode()


def seed(w: World) -> dict[str, Any]:
    """Subjects 7 and 8 spread over partitions, datasets, quarantine and gzip'd raw copies; 9 untouched."""
    c1 = w.land("customers", customers_csv([1, 2, 7, 9]), "a.csv")
    c2 = w.land("customers", customers_csv([3, 8], bad=["8,Bad,x,,GB,not-a-date"]), "b.csv.gz", gz=True)
    o1 = w.land("orders", orders_jsonl([(i, 7 if i % 5 == 0 else 9) for i in range(1, 30)]), "o1.jsonl")
    o2 = w.land("orders", orders_jsonl([(i, 1) for i in range(100, 120)]), "o2.jsonl")  # no subject at all
    o3 = w.land("orders", orders_jsonl([(200, 8)], bad=['{"order_id": 201, "customer_id": 7, "amount": "x"']),
                "o3.jsonl")
    return {"c1": c1, "c2": c2, "o1": o1, "o2": o2, "o3": o3}


def seed_small(w: World) -> None:
    """Subject 7 in two partitions of orders, in quarantine and in one raw copy (crash tests: few requests)."""
    w.land("orders", orders_jsonl([(1, 7), (2, 7), (3, 1)], bad=['{"order_id": 4, "customer_id": 7, "amount": "x"']),
           "s.jsonl")


def subject_rows(rows: Counter, ids: set[int], position: int) -> Counter:
    return Counter({r: n for r, n in rows.items() if r[position] in ids})
