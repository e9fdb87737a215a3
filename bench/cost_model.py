"""AWS list prices (us-east-1, on demand, free tiers left out) and the arithmetic that turns measured
invocations and requests into dollars. Pure functions: bench/cost_bench.py measures, this prices.

Prices as published by AWS for us-east-1 (checked 2026-11); change them here, nowhere else.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

PRICES = {
    "lambda_gb_s_arm64": 0.0000133334,  # $ per GB-second, arm64 (the default architecture)
    "lambda_gb_s_x86_64": 0.0000166667,
    "lambda_request": 0.20 / 1e6,
    "s3_tier1": 0.005 / 1000,  # PUT, COPY, POST, LIST
    "s3_tier2": 0.0004 / 1000,  # GET, HEAD and the rest; DELETE is free
    "sqs_request": 0.40 / 1e6,  # standard queue, per 64 KB chunk of a request
    "events_custom": 1.00 / 1e6,  # custom events put on a bus, per 64 KB chunk
    "dynamodb_wru": 0.625 / 1e6,  # on demand, per write request unit (1 KB)
    "dynamodb_rru": 0.125 / 1e6,  # on demand, per read request unit (4 KB, strongly consistent)
    "glue_catalog_request": 1.00 / 1e6,  # Data Catalog API requests beyond the free million
    "kms_request": 0.03 / 1e4,
    "logs_ingest_gb": 0.50,  # CloudWatch Logs ingestion, per GB (the functions' logs and EMF metrics)
    "xray_trace": 5.00 / 1e6,  # traces recorded
    "athena_tb": 5.00,  # per TB scanned, 10 MB minimum per query
    "glue_dpu_hour": 0.44,  # Glue Spark job
    "s3_tables_compaction_gb": 0.005,  # S3 Tables managed compaction, per GB processed
    "s3_tables_compaction_object": 0.002 / 1000,  # ... and per object processed
    "alarm_month": 0.10,  # standard-resolution CloudWatch alarm
    "dashboard_month": 3.00,
}
GLUE_MIN_DPU = 2
GLUE_MIN_SECONDS = 60
ATHENA_MIN_BYTES = 10 * 1024 * 1024
_READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
_SQS_POLLING = {"ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility"}


@dataclass(frozen=True)
class Call:
    """One AWS request as the request log saw it (etl.local.accounting.Request has these fields)."""

    service: str
    operation: str
    bytes_in: int
    bytes_out: int
    units: int


@dataclass
class Bill:
    """Dollars by line item, with the quantities that produced them."""

    dollars: Counter = field(default_factory=Counter)
    quantities: Counter = field(default_factory=Counter)

    def add(self, item: str, quantity: float, unit_price: float) -> None:
        self.quantities[item] += quantity
        self.dollars[item] += quantity * unit_price

    @property
    def total(self) -> float:
        return sum(self.dollars.values())


def lambda_bill(bill: Bill, durations_ms: Iterable[float], memory_mb: int, architecture: str = "arm64") -> None:
    """Lambda bills each invocation's duration rounded up to the millisecond, times its configured memory."""
    durations = list(durations_ms)
    gb_s = sum(math.ceil(ms) for ms in durations) / 1000 * memory_mb / 1024
    bill.add("lambda GB-s", gb_s, PRICES[f"lambda_gb_s_{architecture}"])
    bill.add("lambda requests", len(durations), PRICES["lambda_request"])
    bill.add("x-ray traces", len(durations), PRICES["xray_trace"])  # upper bound: every invocation sampled


def requests_bill(bill: Bill, calls: Iterable[Call]) -> None:
    """Price what a function asked of AWS. SQS polling is left to `queue_bill`: the local pollers are not Lambda's."""
    for c in calls:
        if c.service == "s3":
            if c.operation == "DELETE":
                continue
            tier = "tier2" if c.operation in ("GET", "HEAD") else "tier1"
            bill.add(f"s3 {tier} requests", 1, PRICES[f"s3_{tier}"])
        elif c.service == "events" and c.operation == "PutEvents":
            bill.add("eventbridge events", c.units * _chunks(c.bytes_in / max(c.units, 1)), PRICES["events_custom"])
        elif c.service == "sqs" and c.operation not in _SQS_POLLING:
            bill.add("sqs requests", _chunks(c.bytes_in), PRICES["sqs_request"])
        elif c.service == "dynamodb" and c.operation in _WRITES:
            per_item = c.bytes_in / max(c.units, 1)
            factor = 2 if c.operation == "TransactWriteItems" else 1
            bill.add("dynamodb WRU", factor * c.units * max(1, math.ceil(per_item / 1024)), PRICES["dynamodb_wru"])
        elif c.service == "dynamodb" and c.operation in _READS:
            factor = 2 if c.operation == "TransactGetItems" else 1
            bill.add("dynamodb RRU", factor * max(c.units, math.ceil(c.bytes_out / 4096)), PRICES["dynamodb_rru"])
        elif c.service == "glue":
            bill.add("glue catalog requests", 1, PRICES["glue_catalog_request"])
        elif c.service == "kms":
            bill.add("kms requests", 1, PRICES["kms_request"])


def queue_bill(bill: Bill, messages: int) -> None:
    """Each message a function consumes: EventBridge's send, one share of a receive, one delete (upper bound)."""
    bill.add("sqs requests", 3 * messages, PRICES["sqs_request"])


def logs_bill(bill: Bill, log_bytes: int) -> None:
    bill.add("cloudwatch logs GB", log_bytes / 1e9, PRICES["logs_ingest_gb"])


def glue_job_dollars(seconds: float, dpu: int = GLUE_MIN_DPU) -> float:
    """A Glue Spark job run: per second, at least one minute, at least two DPUs."""
    return max(seconds, GLUE_MIN_SECONDS) / 3600 * max(dpu, GLUE_MIN_DPU) * PRICES["glue_dpu_hour"]


def glue_dollars_per_gb(seconds_per_gb: float, dpu: int = GLUE_MIN_DPU) -> float:
    """A Glue job's price per GB once its runs are long enough that the one-minute minimum no longer binds."""
    return seconds_per_gb / 3600 * max(dpu, GLUE_MIN_DPU) * PRICES["glue_dpu_hour"]


def idle_month_dollars(alarms: int, dashboards: int, ticks_per_month: int, tick_gb_s: float) -> float:
    """What a deployed but unused environment pays a month: alarms, dashboards, scheduled ticks with nothing to do."""
    ticks = ticks_per_month * (tick_gb_s * PRICES["lambda_gb_s_arm64"] + PRICES["lambda_request"])
    return alarms * PRICES["alarm_month"] + dashboards * PRICES["dashboard_month"] + ticks


def athena_dollars(bytes_scanned: int) -> float:
    return max(bytes_scanned, ATHENA_MIN_BYTES) / 1e12 * PRICES["athena_tb"]


def _chunks(size: float, chunk: int = 64 * 1024) -> int:
    """SQS and EventBridge bill every started 64 KB of a payload as one request/event."""
    return max(1, math.ceil(size / chunk))


def s3_tables_compaction_dollars(bytes_processed: int, objects: int) -> float:
    """S3 Tables' managed compaction: $0.005 per GB processed plus $0.002 per 1,000 objects processed."""
    return (bytes_processed / 1e9 * PRICES["s3_tables_compaction_gb"]
            + objects * PRICES["s3_tables_compaction_object"])


@dataclass(frozen=True)
class Linear:
    """Dollars as `fixed` per run plus `per_gb` for every GB the run holds (a run = one batch or one object)."""

    fixed: float
    per_gb: float

    def dollars(self, gb: float) -> float:
        return self.fixed + self.per_gb * gb


@dataclass(frozen=True)
class PerObject:
    """A cost that is paid per object landed plus per GB landed (so small objects cost more per GB)."""

    per_object: float
    per_gb: float


def per_object_fit(a: tuple[int, float, float], b: tuple[int, float, float]) -> PerObject:
    """Solve dollars = per_object * objects + per_gb * GB from two runs given as (objects, GB, dollars)
    whose objects differ in size; either price is floored at 0 (measurement noise can tip a tiny one negative)."""
    (n1, g1, d1), (n2, g2, d2) = a, b
    det = n1 * g2 - n2 * g1
    if det == 0:
        raise ValueError("the two runs' objects have the same size: per object and per GB cannot be told apart")
    per_object, per_gb = (d1 * g2 - d2 * g1) / det, (n1 * d2 - n2 * d1) / det
    if per_object < 0:
        return PerObject(0.0, max(d1 / g1, d2 / g2))
    if per_gb < 0:
        return PerObject(max(d1 / n1, d2 / n2), 0.0)
    return PerObject(per_object, per_gb)


def glue_run(seconds_per_gb: float, dpu: int = GLUE_MIN_DPU) -> Callable[[float], float]:
    """A Glue run's dollars as a function of the GB it holds (the one-minute minimum, then per second)."""
    return lambda gb: glue_job_dollars(seconds_per_gb * gb, dpu)


def crossover_gb(cheaper_at_volume: Callable[[float], float], cheaper_when_small: Callable[[float], float],
                 *, upper_gb: float = 1e6) -> float | None:
    """Smallest run size (GB, to 1%) from which `cheaper_at_volume` costs less than `cheaper_when_small`;
    None when it never does below `upper_gb`. Both cost functions must be non-decreasing in GB and their
    difference must change sign at most once (true for a minimum-then-linear price against a linear one)."""
    if cheaper_at_volume(upper_gb) >= cheaper_when_small(upper_gb):
        return None
    low, high = 0.0, upper_gb
    if cheaper_at_volume(low) < cheaper_when_small(low):
        return 0.0
    while high - low > max(1e-6, 0.01 * low):
        mid = (low + high) / 2
        if cheaper_at_volume(mid) < cheaper_when_small(mid):
            high = mid
        else:
            low = mid
    return high
