"""The run engine against moto server: real S3 (versions), DynamoDB transactions, Glue, pyarrow over S3.

Workers and ticks are driven in-process from two in-memory queues, so a crash can be injected at
every step of a run (the hook raises once) and the test proves that the next delivery completes it:
same lake, same certificate, nothing erased twice, nothing left.
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
from contracts.commits import PARQUET_INPUT, PARQUET_OUTPUT, PARQUET_SERDE, PartitionCommitter, PartitionRef
from contracts.datasets import load_datasets
from services.erasure import intake, worker
from services.erasure.config import Config
from services.erasure.engine import Engine, Ports
from services.erasure.model import State
from services.erasure.store import VAULT, Store, _key
from services.erasure.vault import seal, unseal
from services.erasure.workspace import Workspace, certificate_key
from services.transform.core import transform
from services.transform.parquet import file_name, parquet_bytes
from services.transform.partition import partition_path

DATASETS = load_datasets()
SALT = b"engine-test-salt-0123456789"
DAY = "2024-05-01"


class Crash(RuntimeError):
    pass


@dataclass
class World:
    cfg: Config
    engine: Engine
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
                    worker.run_task(self.engine, msg["run_id"], msg["task_id"], deadline=time.time() + 300,
                                    hook=self.hook)
                except Crash:
                    self.work.append(msg)
                continue
            if not self.store.active_runs():
                return
            self.ticks.append({"action": "advance"})  # the schedule fires
        raise AssertionError(f"the run did not finish; steps: {self.steps[-20:]}")


@pytest.fixture
def world(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> World:
    return make_world(moto_endpoint, monkeypatch)


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
        glue.create_table(DatabaseName=database, TableInput={
            "Name": ds.name, "TableType": "EXTERNAL_TABLE",
            "PartitionKeys": [{"Name": n, "Type": "string"} for n in ds.partition_names],
            "StorageDescriptor": {"Columns": [{"Name": c.name, "Type": c.glue_type} for c in ds.columns],
                                  "Location": f"s3://{buckets['lake']}/{ds.name}/", "InputFormat": PARQUET_INPUT,
                                  "OutputFormat": PARQUET_OUTPUT,
                                  "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE}}})
    cfg = Config(env="test", bus="bus", lake_bucket=buckets["lake"], raw_bucket=buckets["raw"],
                 quarantine_bucket=buckets["quarantine"], landing_bucket=buckets["landing"],
                 erasure_bucket=buckets["erasure"], state_table=table, database=database, run_queue_url="run",
                 work_queue_url="work", purge_grace_s=0, batch_max_wait_s=3600)
    store = Store(table)
    committer = PartitionCommitter.on_aws(bucket=cfg.lake_bucket, table_name=table, database=database)
    holder: dict[str, World] = {}

    def send(url: str, body: dict[str, Any]) -> None:
        (holder["w"].work if url == "work" else holder["w"].ticks).append(body)

    ports = Ports(send=send, publish=lambda d: holder["w"].published.extend(d),
                  notify=lambda s, m: holder["w"].alerts.append((s, m)), metric=lambda n, v: None)
    engine = Engine(cfg, store=store, workspace=Workspace(cfg.erasure_bucket), committer=committer, ports=ports,
                    salt=SALT, hook=lambda step: holder["w"].hook(step))
    w = World(cfg, engine, store, committer)
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


def test_a_run_erases_every_copy_and_certifies_it(world: World) -> None:
    w = world
    objs = seed(w)
    before = {ds: w.lake_rows(ds) for ds in ("customers", "orders")}
    rid = w.request(["7", "8"])
    w.drive()
    req = w.store.get(rid)
    assert req.state == State.COMPLETED, req.error
    after = {ds: w.lake_rows(ds) for ds in ("customers", "orders")}
    for ds in after:
        gone = subject_rows(before[ds], {7, 8}, 1 if ds == "orders" else 0)
        assert gone, f"the seed puts subject rows in {ds}"
        assert after[ds] == before[ds] - gone, "exactly the subjects' rows are gone, every other row is intact"
    cert = json.loads(Workspace(w.cfg.erasure_bucket).get_bytes(certificate_key(rid, "json")))
    assert cert["outcome"] == "COMPLETED" and cert["verification"]["passed"]
    assert cert["datasets"]["customers"]["rows_removed"] == 2 and cert["datasets"]["orders"]["rows_removed"] == 6
    assert cert["copies_purged"]["quarantine_rows_removed"] == 2
    assert cert["copies_purged"]["raw_lines_blanked"] >= 5 and cert["copies_purged"]["landing_deleted"] >= 3
    text = json.dumps(cert) + Workspace(w.cfg.erasure_bucket).get_bytes(certificate_key(rid, "md")).decode()
    assert '"7"' not in text and "u7@example.com" not in text
    # raw copies: subject lines blank, other lines intact, one version each; untouched object untouched
    s3 = aws.client("s3")
    raw_c2 = gzip.decompress(s3.get_object(Bucket=w.cfg.raw_bucket, Key=layout.raw_key(
        "customers", DAY, objs["c2"], "b.csv.gz"))["Body"].read()).decode().splitlines()
    assert raw_c2 == ["customer_id,name,email,phone,country,signup_date", "3,Name 3,u3@example.com,+44200000003,GB,"
                      "2023-01-15", "", ""]
    versions = s3.list_object_versions(Bucket=w.cfg.raw_bucket, Prefix=f"orders/received={DAY}/{objs['o1']}/")
    assert len(versions.get("Versions", [])) == 1
    untouched = s3.list_object_versions(Bucket=w.cfg.raw_bucket, Prefix=f"orders/received={DAY}/{objs['o2']}/")
    assert len(untouched["Versions"]) == 1 and untouched["Versions"][0]["IsLatest"]
    # quarantine: the subject's refused rows are gone with every old version of their files
    q = s3.list_object_versions(Bucket=w.cfg.quarantine_bucket, Prefix="orders/")
    assert not q.get("Versions"), "o3's only refused row was subject 7's: the file is deleted, every version"
    # old generations of rewritten partitions are gone (all versions)
    lake_keys = [v["Key"] for v in s3.list_object_versions(Bucket=w.cfg.lake_bucket, Prefix="orders/")
                 .get("Versions", [])]
    current = {loc.split("/", 3)[3] for loc in w.generations("orders").values()}
    assert all(any(k.startswith(c) for c in current) for k in lake_keys), "only current generations remain"
    (event,) = w.published
    assert event.request_id == rid and event.verified and event.rows_removed == 8
    assert not w.alerts
    assert w.store.vault_item(rid) is None, "no clear id is kept once the request is done"


def test_partitions_without_subjects_keep_their_generation(world: World) -> None:
    w = world
    w.land("orders", orders_jsonl([(1, 7), (40, 1)]), "x.jsonl")  # 2024-02 holds 7; 2024-01 … holds 1 only
    w.land("orders", orders_jsonl([(4, 1)]), "y.jsonl")
    before = w.generations("orders")
    w.request(["7"], ["orders"])
    w.drive()
    after = w.generations("orders")
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {("2024", "02")}, changed


@pytest.mark.parametrize("step", [
    "phase:lake", "file-rewritten", "staged", "committed", "task:lake", "task:quarantine", "phase:raw", "task:raw",
    "phase:purge", "purged", "phase:verify", "verified", "terminal", "certified",
])
def test_a_crash_at_any_step_is_completed_by_the_retry(world: World, step: str) -> None:
    w = world
    seed_small(w)
    before = w.lake_rows("orders")
    rid = w.request(["7"], ["orders"], client="crash-test")
    w.crash_at = step
    w.drive()
    assert w.crashes == 1, f"step {step} was never reached"
    req = w.store.get(rid)
    assert req.state == State.COMPLETED, req.error
    assert w.lake_rows("orders") == before - subject_rows(before, {7}, 1)
    assert {e.request_id for e in w.published} == {rid}
    cert = json.loads(Workspace(w.cfg.erasure_bucket).get_bytes(certificate_key(rid, "json")))
    assert cert["datasets"]["orders"]["rows_removed"] == 2 and cert["verification"]["passed"]
    assert cert["copies_purged"]["quarantine_rows_removed"] == 1


def test_cancel_while_finding_rewrites_nothing(world: World) -> None:
    w = world
    seed(w)
    gens = w.generations("orders"), w.generations("customers")
    rid = w.request(["7"])

    def cancel(step: str) -> None:
        if step == "found":
            def change(r: Any) -> bool:
                r.move(State.CANCELLED, time.time(), "test")
                return True
            w.store.update(rid, change, retention_s=60)

    w.engine.hook = cancel
    w.drive()
    assert w.store.get(rid).state == State.CANCELLED
    assert (w.generations("orders"), w.generations("customers")) == gens
    assert not w.published and w.store.vault_item(rid) is None


def test_duplicate_delivery_is_one_request_and_one_certificate(world: World) -> None:
    w = world
    seed(w)
    a = w.request(["8"], client="ticket-42")
    b = w.request(["8"], client="ticket-42")
    assert a == b
    with pytest.raises(Exception, match="different request"):
        w.request(["7"], client="ticket-42")
    w.drive()
    reqs, _ = w.store.list_requests(10)
    assert [r.id for r in reqs] == [a] and len(w.published) == 1


def test_batching_takes_every_pending_request_into_one_run(world: World) -> None:
    w = world
    seed(w)
    ids = [w.request(["7"], ["orders"]), w.request(["8"], ["customers"]), w.request(["9"], ["orders"])]
    w.drive()
    runs = {w.store.get(i).run_id for i in ids}
    assert len(runs) == 1 and all(w.store.get(i).state == State.COMPLETED for i in ids)
    customers = w.lake_rows("customers")
    assert any(r[0] == 7 for r in customers), "request 1 was scoped to orders: customer 7 stays"
    assert not any(r[0] == 8 for r in customers)


def test_a_failed_verification_ends_failed_with_what_remains(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    seed(w)
    rid = w.request(["7"], ["orders"])
    monkeypatch.setattr(worker, "_lake_task", lambda *a, **k: {"generation": None, "files": [], "by_subject": {},
                                                                 "lineage": {}, "rows_removed": 0})
    w.drive()
    req = w.store.get(rid)
    assert req.state == State.FAILED and "lake row(s) left" in (req.error or "")
    assert w.engine.store.get_run(req.run_id).body["attempt"] == w.cfg.max_attempts
    assert w.alerts and rid in w.alerts[0][0] and "7" not in w.alerts[0][1].replace(rid, "")


@pytest.mark.parametrize("lost_at", ["before the run", "found"])
def test_a_request_whose_vault_item_is_gone_ends_failed_never_completed(world: World, lost_at: str) -> None:
    """The vault's TTL backstop firing on an open request: its ids cannot be searched any more, so it
    must not be certified COMPLETED (nothing of it was erased); the other request of the run is."""
    w = world
    seed_small(w)
    lost, kept = w.request(["7"], ["orders"]), w.request(["1"], ["orders"])

    def expire() -> None:
        w.store.ddb.delete_item(TableName=w.store.vault_table, Key=_key(VAULT + lost))

    if lost_at == "before the run":
        expire()
    else:
        steps = w.hook

        def hook(step: str) -> None:
            if step == lost_at and w.store.vault_item(lost) is not None:
                expire()
            steps(step)

        w.hook = hook  # type: ignore[method-assign]
    w.drive()
    req = w.store.get(lost)
    assert req.state == State.FAILED and req.state != State.COMPLETED
    assert (req.error or "").startswith("subject ids no longer available: vault item missing")
    assert "7" not in (req.error or "") + json.dumps(req.result).replace(lost, "")
    assert w.store.get(kept).state == State.COMPLETED, w.store.get(kept).error
    assert w.store.get_run(req.run_id).body["attempt"] == 1, "another attempt cannot bring the ids back"
    cert = json.loads(Workspace(w.cfg.erasure_bucket).get_bytes(certificate_key(lost, "json")))
    assert cert["outcome"] == "FAILED" and not cert["verification"]["passed"]
    assert [e.state for e in w.published if e.request_id == lost] == ["FAILED"]
    assert any(lost in subject for subject, _ in w.alerts)


def test_kms_sealed_ids_round_trip(world: World) -> None:
    key = aws.client("kms").create_key()["KeyMetadata"]["KeyId"]
    item = seal("er-x", ["42", "43"], key)
    # the payload is base64 ciphertext, which may contain "42" by chance: check it is not the ids themselves
    assert item["kind"]["S"] == "kms" and item["payload"]["S"] not in (json.dumps(["42", "43"]), '["42","43"]')
    assert not any(token in ("42", "43") for token in json.loads(item["payload"]["S"]))
    assert unseal("er-x", item) == ["42", "43"]
    with pytest.raises(Exception, match="InvalidCiphertext"):
        unseal("er-y", item)



def test_lake_verification_resumes_in_the_next_tick(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A big lake is verified over several invocations: each partition once, none skipped."""
    from services.erasure import verify

    w = world
    seed(w)
    rid = w.request(["7", "8"])
    real, calls = verify.verify_partition, []

    def one_per_tick(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(args[1])
        w.engine.clock = lambda: time.time() + 10_000  # this invocation's budget is spent
        return real(*args, **kwargs)

    real_tick = w.engine.tick

    def tick(**kwargs: Any) -> dict[str, Any]:
        w.engine.clock = time.time  # a fresh invocation
        return real_tick(**kwargs)

    monkeypatch.setattr(verify, "verify_partition", one_per_tick)
    monkeypatch.setattr(w.engine, "tick", tick)
    w.drive(rounds=200)
    assert w.store.get(rid).state == State.COMPLETED
    assert len(calls) == len(set(calls)) > 2, "every partition verified once, over several ticks"
