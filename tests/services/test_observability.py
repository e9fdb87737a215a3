"""Per-dataset metrics and trace annotations of every handler: what a processed record emits.

Records go through the real handlers (ingest, transform and erasure against moto server, compact against
a fake compactor): each processed record must flush its own EMF blob with a `dataset` dimension, the
shared blob of the invocation must not carry one (batches mix datasets), and for erasure no subject id
may appear in metrics, trace annotations or anything else the handlers print.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from contracts import aws, events, layout
from contracts import metrics as dataset_metrics
from etl.local.functions import FunctionSpec, LambdaContext
from services.compact import handler as compact_handler
from services.compact.jobs import Outcome
from services.erasure import handlers as erasure_handlers
from services.ingest import handler as ingest_handler
from services.transform import handler as transform_handler
from tests.services.compact_fakes import FakeCompactor, envelope, record
from tests.services.erasure_world import SALT, World, customers_csv, orders_jsonl

pytestmark = pytest.mark.filterwarnings("ignore:Disabling idempotency is intended for development")

SUBJECT = 987654321  # distinctive: a substring search for it cannot hit timestamps or counts by chance


def context(name: str, handler: str) -> LambdaContext:
    return LambdaContext(FunctionSpec(name, handler, 900, 512, {}))


def json_records(out: str) -> list[dict[str, Any]]:
    """Every line of output that is a JSON object: EMF blobs and log records alike."""
    records = []
    for line in out.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            records.append(obj)
    return records


def emf_blobs(out: str) -> list[dict[str, Any]]:
    return [r for r in json_records(out) if "_aws" in r]


def dimensions(blob: dict[str, Any]) -> set[str]:
    return {d for ds in blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in ds}


def value(blob: dict[str, Any], name: str) -> float:
    """A metric's total in one blob (powertools writes each value as a list)."""
    v = blob[name]
    return sum(v) if isinstance(v, list) else v


def values(blob: dict[str, Any], *names: str) -> tuple[float, ...]:
    return tuple(value(blob, n) for n in names)


def log_lines(out: str, message: str) -> list[dict[str, Any]]:
    """The handler's JSON log records with this message."""
    return [r for r in json_records(out) if r.get("message") == message]


def per_dataset(blobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The per-record blobs, by dataset (one per dataset in these tests)."""
    out = {}
    for b in blobs:
        if dataset_metrics.DATASET in dimensions(b):
            assert b[dataset_metrics.DATASET] not in out, "one blob per processed record"
            out[b[dataset_metrics.DATASET]] = b
    return out


def shared(blobs: list[dict[str, Any]]) -> dict[str, Any]:
    """The invocation's blob from `Metrics.log_metrics`: last, and never with a dataset dimension."""
    assert dataset_metrics.DATASET not in dimensions(blobs[-1]), blobs[-1]
    return blobs[-1]


@pytest.fixture
def aws_env(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The engine tests' world plus a bus, as the env of ingest and transform; idempotency off (its client is
    made at import, before the moto endpoint exists: the idempotency layer is not what these tests are about)."""
    bus = f"bus-{uuid.uuid4().hex[:8]}"
    aws.client("events").create_event_bus(Name=bus)
    c = world.cfg
    for k, v in {"BUS_NAME": bus, "RAW_BUCKET": c.raw_bucket, "LAKE_BUCKET": c.lake_bucket,
                 "QUARANTINE_BUCKET": c.quarantine_bucket, "STATE_TABLE": c.state_table,
                 "GLUE_DATABASE": c.database, "POWERTOOLS_IDEMPOTENCY_DISABLED": "true"}.items():
        monkeypatch.setenv(k, v)
    yield world


def capture_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send the handlers' JSON logs to the current sys.stdout (capsys, in the test body): powertools bound its
    stream at import time, to whatever stdout was then."""
    for module in (ingest_handler, transform_handler, compact_handler):
        monkeypatch.setattr(module.logger.registered_handler, "stream", sys.stdout)


# -- the helper ---------------------------------------------------------------------------------------------
def test_a_record_blob_has_service_and_dataset_and_only_contract_names(capsys: pytest.CaptureFixture) -> None:
    from aws_lambda_powertools import Metrics

    shared_metrics = Metrics(namespace="etl-test", service="svc")
    with dataset_metrics.for_dataset(shared_metrics, "orders") as m:
        m.add_metric(name="RowsGood", unit="Count", value=3)
    with dataset_metrics.for_dataset(shared_metrics, "customers/../secret") as m:
        m.add_metric(name="RowsGood", unit="Count", value=1)
    with dataset_metrics.for_dataset(shared_metrics, "orders"):
        pass  # nothing added: nothing flushed
    with pytest.raises(RuntimeError), dataset_metrics.for_dataset(shared_metrics, "orders") as m:
        m.add_metric(name="RowsGood", unit="Count", value=5)
        raise RuntimeError("the record failed: it is retried, its metrics are not emitted")
    blobs = emf_blobs(capsys.readouterr().out)
    assert [(b["service"], b["dataset"], value(b, "RowsGood")) for b in blobs] == [("svc", "orders", 3),
                                                                                     ("svc", "unknown", 1)]
    assert all(b["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "etl-test" for b in blobs)
    assert dimensions(blobs[0]) == {"service", "dataset"}
    assert not shared_metrics.metric_set, "the shared instance is untouched"


# -- ingest ---------------------------------------------------------------------------------------------------
def test_ingest_emits_per_dataset_metrics_per_object(aws_env: World, capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    capture_logs(monkeypatch)
    monkeypatch.setattr(ingest_handler.metrics, "service", "ingest")
    s3, landing = aws.client("s3"), aws_env.cfg.landing_bucket
    body = customers_csv([1, 2])
    records = []
    for key, data in (("customers/2024/c.csv", body), ("nosuch/x.csv", b"a,b\n1,2\n")):
        etag = s3.put_object(Bucket=landing, Key=key, Body=data)["ETag"].strip('"')
        env = {"version": "0", "id": uuid.uuid4().hex, "detail-type": "Object Created", "source": "aws.s3",
               "account": "123456789012", "time": "2024-05-01T10:00:00Z", "region": "us-east-1", "resources": [],
               "detail": {"bucket": {"name": landing}, "object": {"key": key, "size": len(data), "etag": etag}}}
        records.append(record(json.dumps(env)))
    response = ingest_handler.handler({"Records": records}, context("etl-test-ingest", "ingest"))
    assert response == {"batchItemFailures": []}
    out = capsys.readouterr().out
    (stored,) = log_lines(out, "object stored raw")
    assert stored["correlation_id"] == stored["object_id"], "the object id follows the object through every service"
    assert stored["event_id"] != stored["correlation_id"]
    blobs = emf_blobs(out)
    by_dataset = per_dataset(blobs)
    assert set(by_dataset) == {"customers", "unknown"}, "a dataset with no contract is not a dimension value"
    customers = by_dataset["customers"]
    assert customers["service"] == "ingest"
    assert values(customers, "ObjectsIngested", "BytesIngested") == (1, len(body))
    assert value(customers, "IngestLatencyMs") >= 0
    assert value(by_dataset["unknown"], "ObjectsRejected") == 1 and "ObjectsIngested" not in by_dataset["unknown"]
    totals = shared(blobs)
    assert values(totals, "ObjectsIngested", "ObjectsRejected", "BytesIngested") == (1, 1, len(body))


# -- transform ------------------------------------------------------------------------------------------------
def test_transform_emits_rows_bytes_files_and_latency_per_chunk(aws_env: World, capsys: pytest.CaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    capture_logs(monkeypatch)
    monkeypatch.setattr(transform_handler.metrics, "service", "transform")
    data = customers_csv([1, 2, 3], bad=["4,Bad,x,,GB,not-a-date"])
    oid = uuid.uuid4().hex[:20]
    key = layout.raw_key("customers", "2024-05-01", oid, "c.csv")
    s3 = aws.client("s3")
    etag = s3.put_object(Bucket=aws_env.cfg.raw_bucket, Key=key, Body=data)["ETag"].strip('"')
    stored = events.RawObjectStored(dataset="customers", object_id=oid, raw_bucket=aws_env.cfg.raw_bucket,
                                    raw_key=key, size=len(data), etag=etag, source_bucket=aws_env.cfg.landing_bucket,
                                    source_key="customers/c.csv")
    response = transform_handler.handler({"Records": [record(envelope(stored))]},
                                         context("etl-test-transform", "transform"))
    assert response == {"batchItemFailures": []}
    out = capsys.readouterr().out
    assert [line["correlation_id"] for line in log_lines(out, "chunk transformed")] == [oid]
    blobs = emf_blobs(out)
    (blob,) = per_dataset(blobs).values()
    assert (blob["service"], blob["dataset"]) == ("transform", "customers")
    assert values(blob, "RowsGood", "RowsQuarantined", "BytesIn") == (3, 1, len(data))
    assert value(blob, "FilesWritten") == 3, "customers 1, 2, 3 signed up in 2023-02, -03, -01: one file per partition"
    assert value(blob, "ChunkLatencyMs") > 0
    totals = shared(blobs)
    assert values(totals, "RowsGood", "RowsQuarantined") == (3, 1)


# -- compact --------------------------------------------------------------------------------------------------
class CompactingFake(FakeCompactor):
    """Every PartitionFilesAdded compacts its partition into one file."""

    def files_added(self, detail: events.PartitionFilesAdded, deadline: float) -> Outcome:
        bin_ = events.PartitionCompacted(dataset=detail.dataset, partition=detail.partition, generation=2,
                                         files_before=4, files_after=1, bytes_before=4000, bytes_after=3000, rows=40,
                                         duration_ms=120)
        return Outcome(detail.dataset, detail.partition, "compacted", [bin_])


def test_compact_batch_of_two_datasets_emits_one_blob_per_dataset(capsys: pytest.CaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    capture_logs(monkeypatch)
    monkeypatch.setattr(compact_handler, "compactor", CompactingFake)
    monkeypatch.setattr(compact_handler.metrics, "service", "compact")
    annotations: list[tuple[str, Any]] = []
    monkeypatch.setattr(compact_handler.tracer, "put_annotation", lambda key, value: annotations.append((key, value)))
    added = [events.PartitionFilesAdded(dataset=ds, partition=part, generation=1, files=["a.parquet"], rows=5,
                                        bytes=100, object_id=f"obj-{ds}")
             for ds, part in (("orders", {"order_year": "2024", "order_month": "05"}),
                              ("customers", {"signup_year": "2023", "signup_month": "01"}))]
    response = compact_handler.handler({"Records": [record(envelope(a)) for a in added]},
                                       context("etl-test-compact", "compact"))
    assert response == {"batchItemFailures": []}
    out = capsys.readouterr().out
    assert [line["correlation_id"] for line in log_lines(out, "partition checked")] == ["obj-orders", "obj-customers"]
    blobs = emf_blobs(out)
    by_dataset = per_dataset(blobs)
    assert set(by_dataset) == {"orders", "customers"}
    for blob in by_dataset.values():
        assert values(blob, "FilesBefore", "FilesAfter", "BytesCompacted", "CompactionLatencyMs") == (4, 1, 4000, 120)
        assert blob["service"] == "compact"
    totals = shared(blobs)
    assert values(totals, "FilesCompacted", "BytesCompacted", "BinsCommitted") == (8, 8000, 2)
    assert annotations == [("dataset", "orders"), ("dataset", "customers")]


# -- erasure --------------------------------------------------------------------------------------------------
def test_erasure_counts_per_dataset_and_never_shows_a_subject_id(world: World, capfd: pytest.CaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An ErasureRequested through the intake handler, ticks through the run handler, tasks through the worker
    handler: the rows and files are counted per dataset; the subject id is in no metric, annotation or output."""
    w = world
    w.land("orders", orders_jsonl([(1, SUBJECT), (2, SUBJECT), (3, 1)],
                                  bad=[f'{{"order_id": 4, "customer_id": {SUBJECT}, "amount": "x"']), "s.jsonl")
    monkeypatch.setattr(erasure_handlers, "Config", SimpleNamespace(from_environ=lambda: w.cfg))
    monkeypatch.setattr(erasure_handlers, "load_salt", lambda parameter: SALT)
    monkeypatch.setattr(erasure_handlers, "engine", lambda cfg=None: w.engine)
    monkeypatch.setattr(erasure_handlers, "task_worker", lambda cfg: w.worker)
    monkeypatch.setattr(erasure_handlers.metrics, "service", "erasure-worker")
    annotations: list[tuple[str, Any]] = []
    monkeypatch.setattr(erasure_handlers.tracer, "put_annotation", lambda key, value: annotations.append((key, value)))
    capfd.readouterr()  # what landing the data printed is not the handlers' output

    request = events.ErasureRequested(subject_ids=[str(SUBJECT)], datasets=["orders"], reason="GDPR art. 17",
                                      requested_by="dpo", client_request_id="obs-1")
    intake = erasure_handlers.events_handler({"Records": [record(envelope(request))]},
                                             context("etl-test-erasure-intake", "events_handler"))
    assert intake == {"batchItemFailures": []}
    tick = context("etl-test-erasure-run", "run_handler")
    erasure_handlers.run_handler({"Records": [record(json.dumps({"action": "start"}))]}, tick)
    for _ in range(60):
        if w.ticks:
            batch, w.ticks = w.ticks, []
            erasure_handlers.run_handler({"Records": [record(json.dumps(t)) for t in batch]}, tick)
        elif w.work:
            response = erasure_handlers.worker_handler({"Records": [record(json.dumps(w.work.pop(0)))]},
                                                       context("etl-test-erasure-worker", "worker_handler"))
            assert response == {"batchItemFailures": []}
        elif w.store.active_runs():
            w.ticks.append({"action": "advance"})  # the schedule fires
        else:
            break
    else:
        raise AssertionError("the run did not finish")

    out = capfd.readouterr().out
    blobs = emf_blobs(out)
    orders = [b for b in blobs if b.get(dataset_metrics.DATASET) == "orders"]
    assert orders and all(b["service"] == "erasure-worker" for b in orders)
    assert sum(value(b, "ErasureRowsRemoved") for b in orders) == 3, "two lake rows and one quarantined row"
    assert sum(value(b, "ErasureFilesRewritten") for b in orders) >= 2, "a lake file and the quarantine file at least"
    assert {b[dataset_metrics.DATASET] for b in blobs if dataset_metrics.DATASET in dimensions(b)} == {"orders"}
    assert ("datasets", "orders") in annotations and ("dataset", "orders") in annotations
    assert {k for k, _ in annotations} <= {"request_id", "datasets", "run_id", "dataset"}
    assert str(SUBJECT) not in json.dumps(annotations)
    assert str(SUBJECT) not in out, "no subject id in what the handlers print (metrics and logs)"
