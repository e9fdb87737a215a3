"""etl.samples: deterministic, realistic, and hostile exactly where it says."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from contracts.datasets import get_dataset
from etl import samples
from tests.services.transform_helpers import reasons, run

ROOT = Path(__file__).resolve().parents[2]


def test_same_arguments_same_bytes_other_seed_other_bytes() -> None:
    assert samples.customers_csv(100, seed=4, hostile=5).data == samples.customers_csv(100, seed=4, hostile=5).data
    assert samples.orders_jsonl(100, seed=4).data != samples.orders_jsonl(100, seed=5).data


def test_customers_look_real() -> None:
    rows = list(csv.DictReader(io.StringIO(samples.customers_csv(400, seed=1).text)))
    assert len(rows) == 400 and list(rows[0]) == list(samples.CUSTOMER_COLUMNS)
    assert [int(r["customer_id"]) for r in rows] == list(range(1, 401))
    assert all(r["email"] == "" or "@" in r["email"] for r in rows)
    assert all(r["phone"] == "" or (r["phone"].startswith("+") and r["phone"][1:].isdigit()) for r in rows)
    assert {r["country"] for r in rows} >= {"DE", "FR", "US", "JP"}
    assert any(not r["name"].isascii() for r in rows) and any("," in r["name"] for r in rows)
    years = {r["signup_date"][:4] for r in rows}
    months = {r["signup_date"][:7] for r in rows}
    assert len(years) >= 4 and len(months) >= 24


def test_orders_look_real() -> None:
    lines = samples.orders_jsonl(300, seed=2, customers=50).text.splitlines()
    orders = [json.loads(line) for line in lines]
    assert [o["order_id"] for o in orders] == list(range(1, 301))
    assert all(1 <= o["customer_id"] <= 50 for o in orders)
    assert {o["status"] for o in orders} == set(samples.STATUSES)
    assert all(round(o["amount"], 2) == o["amount"] > 0 for o in orders)
    assert len({o["order_date"][:7] for o in orders}) >= 24


@pytest.mark.parametrize(("dataset", "make", "kinds"), [
    ("customers", samples.customers_csv, samples.CSV_HOSTILE),
    ("orders", samples.orders_jsonl, samples.JSONL_HOSTILE),
])  # fmt: skip
def test_every_hostile_kind_is_quarantined_on_its_line(
    dataset: str, make: Callable[..., samples.Sample], kinds: tuple[str, ...]
) -> None:
    sample = make(200, seed=7, hostile=2 * len(kinds))
    assert sorted(sample.hostile.values()) == sorted(kinds * 2)
    result = run(get_dataset(dataset), sample.data)
    assert set(reasons(result)) == set(sample.hostile)
    assert result.rows_in == 200 and result.rows_good == 200 - len(sample.hostile)


def test_hostile_count_is_checked() -> None:
    with pytest.raises(ValueError, match="hostile rows"):
        samples.customers_csv(3, hostile=4)
    with pytest.raises(ValueError, match="no sample generator"):
        samples.generate("payments", 3)


def test_write_files_continues_ids_across_files(tmp_path: Path) -> None:
    paths = samples.write_files("customers", tmp_path / "c", rows=10, files=3, seed=1)
    assert [p.name for p in paths] == ["customers-0001.csv", "customers-0002.csv", "customers-0003.csv"]
    ids = [int(r["customer_id"]) for p in paths for r in csv.DictReader(io.StringIO(p.read_text()))]
    assert ids == list(range(1, 31))


def test_command_line_writes_the_shipped_sample(tmp_path: Path) -> None:
    out = tmp_path / "customers-0001.csv"
    cmd = [sys.executable, "-m", "etl.samples", "customers", "--rows", "200", "--hostile", "7", "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    assert out.read_bytes() == (ROOT / "samples" / "customers" / "customers-0001.csv").read_bytes()


def test_samples_module_needs_no_heavy_dependencies() -> None:
    code = "import sys, etl.samples; assert not {'pyarrow', 'pandas', 'duckdb'} & set(sys.modules), sys.modules.keys()"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
