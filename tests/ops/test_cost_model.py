"""The arithmetic that turns measured invocations and requests into dollars (bench/cost_model.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import cost_model
from cost_model import PRICES, Bill, Call


def test_glue_bills_at_least_one_minute_of_two_dpus() -> None:
    minimum = 60 / 3600 * 2 * 0.44
    assert cost_model.glue_job_dollars(1) == pytest.approx(minimum)
    assert cost_model.glue_job_dollars(60) == pytest.approx(minimum)
    assert cost_model.glue_job_dollars(120) == pytest.approx(2 * minimum)
    assert cost_model.glue_job_dollars(120, dpu=1) == pytest.approx(2 * minimum), "2 DPU is the floor"
    assert cost_model.glue_job_dollars(3600, dpu=10) == pytest.approx(4.40)


def test_lambda_rounds_each_invocation_up_to_the_millisecond_at_configured_memory() -> None:
    bill = Bill()
    cost_model.lambda_bill(bill, [0.2, 999.1], memory_mb=2048)
    assert bill.quantities["lambda GB-s"] == pytest.approx((1 + 1000) / 1000 * 2)
    assert bill.dollars["lambda GB-s"] == pytest.approx(2.002 * PRICES["lambda_gb_s_arm64"])
    assert bill.quantities["lambda requests"] == 2
    x86 = Bill()
    cost_model.lambda_bill(x86, [1000], memory_mb=1024, architecture="x86_64")
    assert x86.dollars["lambda GB-s"] == pytest.approx(PRICES["lambda_gb_s_x86_64"])


def test_requests_are_priced_by_class_size_and_batch() -> None:
    bill = Bill()
    cost_model.requests_bill(bill, [
        Call("s3", "PUT", 10, 0, 1), Call("s3", "COPY", 0, 0, 1), Call("s3", "LIST", 0, 900, 1),
        Call("s3", "GET", 0, 5, 1), Call("s3", "HEAD", 0, 0, 1), Call("s3", "DELETE", 0, 0, 1),
        Call("events", "PutEvents", 3 * 100_000, 0, 3),  # 3 entries of 100 KB: 2 chunks of 64 KB each
        Call("sqs", "SendMessage", 1000, 0, 1), Call("sqs", "ReceiveMessage", 10, 0, 1),
        Call("dynamodb", "PutItem", 3000, 0, 1), Call("dynamodb", "TransactWriteItems", 400, 0, 2),
        Call("dynamodb", "GetItem", 50, 9000, 1), Call("glue", "UpdatePartition", 10, 10, 1),
    ])
    assert bill.quantities["s3 tier1 requests"] == 3
    assert bill.quantities["s3 tier2 requests"] == 2  # DELETE is free
    assert bill.quantities["eventbridge events"] == 6
    assert bill.quantities["sqs requests"] == 1, "the pollers' receives are priced by queue_bill"
    assert bill.quantities["dynamodb WRU"] == 3 + 2 * 2
    assert bill.quantities["dynamodb RRU"] == 3
    assert bill.quantities["glue catalog requests"] == 1
    assert bill.total == pytest.approx(sum(bill.dollars.values()))
    assert bill.dollars["s3 tier1 requests"] == pytest.approx(3 * 0.005 / 1000)


def test_athena_has_a_ten_megabyte_minimum() -> None:
    assert cost_model.athena_dollars(1) == cost_model.athena_dollars(10 * 1024 * 1024)
    assert cost_model.athena_dollars(10**12) == pytest.approx(5.0)


def test_glue_per_gb_and_idle_month() -> None:
    assert cost_model.glue_dollars_per_gb(3600) == pytest.approx(0.88)
    assert cost_model.idle_month_dollars(alarms=20, dashboards=1, ticks_per_month=0, tick_gb_s=0) == pytest.approx(5.0)
    ticks = cost_model.idle_month_dollars(alarms=0, dashboards=0, ticks_per_month=1_000_000, tick_gb_s=1)
    assert ticks == pytest.approx(1_000_000 * (PRICES["lambda_gb_s_arm64"] + PRICES["lambda_request"]))


def test_s3_tables_compaction_bills_bytes_and_objects() -> None:
    assert cost_model.s3_tables_compaction_dollars(10**9, 0) == pytest.approx(0.005)
    assert cost_model.s3_tables_compaction_dollars(0, 1000) == pytest.approx(0.002)
    assert cost_model.s3_tables_compaction_dollars(2 * 10**9, 500) == pytest.approx(0.011)


def test_crossover_of_a_minimum_priced_job_and_a_linear_price() -> None:
    glue = cost_model.glue_run(seconds_per_gb=25)  # $0.0147 minimum, then 25 s per GB at 2 DPU
    per_gb = cost_model.glue_dollars_per_gb(25)
    dearer = cost_model.Linear(fixed=0.0, per_gb=4 * per_gb)
    at = cost_model.crossover_gb(glue, dearer.dollars)
    assert at is not None
    assert glue(at * 1.02) < dearer.dollars(at * 1.02) and glue(at * 0.98) >= dearer.dollars(at * 0.98)
    assert at == pytest.approx(cost_model.glue_job_dollars(0) / (4 * per_gb), rel=0.02), "the minimum binds there"
    cheaper = cost_model.Linear(fixed=0.0, per_gb=per_gb / 2)
    assert cost_model.crossover_gb(glue, cheaper.dollars) is None, "never cheaper than a lower linear price"
    assert cost_model.crossover_gb(cheaper.dollars, glue) == 0.0


def test_per_object_and_per_gb_prices_are_recovered_from_two_runs() -> None:
    truth = cost_model.PerObject(per_object=0.0001, per_gb=0.003)
    runs = [(n, gb, truth.per_object * n + truth.per_gb * gb) for n, gb in ((32, 0.1), (32, 1.05))]
    fit = cost_model.per_object_fit(*runs)
    assert fit.per_object == pytest.approx(truth.per_object) and fit.per_gb == pytest.approx(truth.per_gb)
    # noise can tip the per-object price below zero: it is floored, and per GB carries the whole cost
    assert cost_model.per_object_fit((10, 1.0, 0.005), (10, 2.0, 0.0101)) == cost_model.PerObject(0.0, 0.00505)
    with pytest.raises(ValueError, match="same size"):
        cost_model.per_object_fit((10, 1.0, 0.01), (20, 2.0, 0.02))
