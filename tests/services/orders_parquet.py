"""Small orders files written as transform writes them (same writer, layout, bloom filters): FIND and REWRITE input."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from contracts.arrow import lake_schema
from contracts.datasets import load_datasets
from services.transform.parquet import write_partition

ORDERS = load_datasets()["orders"]
SALT = b"unit-test-salt-0123456789"


def orders_table(customers: list[int], seed: int = 0) -> pa.Table:
    rnd = random.Random(seed)
    n = len(customers)
    t = pa.table({
        "order_id": pa.array(range(n), pa.int64()),
        "customer_id": pa.array(customers, pa.int64()),
        "amount": pa.array([Decimal(rnd.randrange(100, 9999)) / 100 for _ in range(n)], pa.decimal128(12, 2)),
        "status": pa.array([rnd.choice(["placed", "paid"]) for _ in range(n)]),
        "order_date": pa.array([dt.date(2024, 5, 1 + i % 28) for i in range(n)], pa.date32()),
        "_source_object_id": pa.array(["obj"] * n),
        "_source_line": pa.array(range(1, n + 1), pa.int64()),
    })
    return t.cast(lake_schema(ORDERS))


def write(tmp_path: Path, name: str, customers: list[int], row_group_rows: int | None = None) -> Path:
    ds = ORDERS if row_group_rows is None else ORDERS.model_copy(
        update={"storage": ORDERS.storage.model_copy(update={"row_group_rows": row_group_rows})})
    path = tmp_path / name
    write_partition(orders_table(customers), str(path), ds)
    return path
