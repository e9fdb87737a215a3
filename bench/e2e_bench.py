"""Land → queryable on the local platform with default settings, beside DuckDB COPY of the same CSV.

    .venv/bin/python bench/e2e_bench.py --sf 1 10 --feed-runs 7 [--update-docs]

Needs `tpchgen-cli` (`.venv/bin/pip install tpchgen-cli`) and ~2 GB of disk per SF10 copy. One
command, one platform (`etl local up` with no flags but the TPC-H contract, bench/tpch_orders.toml,
offered through ETL_EXTRA_DATASETS):

* per scale factor: `etl load orders.csv --dataset tpch_orders` as a user would (the upload is timed
  apart), then land → every chunk transformed → the first query that sees every row; then the lake
  is checked exact against DuckDB over the same CSV: rows, sum(o_totalprice), rows and sums per
  (order_year, order_month) partition;
* a 1,000-row daily feed (one day: one partition) landed `--feed-runs` times: land → queryable, p50;
* peak resident memory of the emulator (the supervisor process, which serves moto) and of each
  function host process, sampled every 0.2 s, per phase: it must stay flat as the file grows;
* DuckDB `COPY (SELECT *, year(), month() FROM read_csv(…)) TO … (PARTITION_BY …)` of the same CSV
  on the same machine: the ratio is the figure.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _harness import etl, local_records, machine, tpch_orders, update_docs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATASET = "tpch_orders"
DUCKDB_COLUMNS = {"o_orderkey": "BIGINT", "o_custkey": "BIGINT", "o_orderstatus": "VARCHAR",
                  "o_totalprice": "DECIMAL(15,2)", "o_orderdate": "DATE", "o_orderpriority": "VARCHAR",
                  "o_clerk": "VARCHAR", "o_shippriority": "INTEGER", "o_comment": "VARCHAR"}
PARTITION_SQL = (f"SELECT order_year, order_month, count(*) AS n, sum(o_totalprice) AS total FROM {DATASET} "
                 "GROUP BY 1, 2 ORDER BY 1, 2")


def duckdb_copy(csv_path: Path, out: Path) -> tuple[float, list[tuple[Any, ...]]]:
    """DuckDB's COPY to partitioned Parquet (its own default threads), and the expected partitions."""
    import duckdb

    con = duckdb.connect()
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in DUCKDB_COLUMNS.items()) + "}"
    source = f"read_csv('{csv_path}', header = true, delim = ',', quote = '\"', columns = {columns})"
    shutil.rmtree(out, ignore_errors=True)  # left by an interrupted run: COPY refuses a non-empty directory
    t0 = time.perf_counter()
    con.execute(f"""COPY (SELECT *, year(o_orderdate) AS order_year, month(o_orderdate) AS order_month FROM {source})
                    TO '{out}' (FORMAT parquet, PARTITION_BY (order_year, order_month), COMPRESSION zstd)""")
    seconds = time.perf_counter() - t0
    expected = con.execute(f"""SELECT year(o_orderdate), month(o_orderdate), count(*), sum(o_totalprice)
                               FROM {source} GROUP BY 1, 2 ORDER BY 1, 2""").fetchall()
    shutil.rmtree(out, ignore_errors=True)
    return seconds, [(int(y), int(m), int(n), str(t)) for y, m, n, t in expected]


class Memory(threading.Thread):
    """Peak VmRSS per process of the platform (supervisor = emulator, every function host), per phase."""

    def __init__(self, names: dict[int, str]) -> None:
        super().__init__(daemon=True)
        self.names, self.peak, self.stop = names, {}, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for pid, name in list(self.names.items()):
                rss = _rss_mb(pid)
                if rss:
                    self.peak[name] = max(self.peak.get(name, 0.0), rss)

    def phase(self) -> dict[str, float]:
        peak, self.peak = self.peak, {}
        return peak


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def summary(peaks: dict[str, float]) -> tuple[float, str, float]:
    """(emulator peak, largest function host, its peak) of one phase."""
    emulator = peaks.get("emulator", 0.0)
    hosts = {k: v for k, v in peaks.items() if k != "emulator"}
    name, host = max(hosts.items(), key=lambda kv: kv[1]) if hosts else ("-", 0.0)
    return emulator, name.rsplit("etl-local-", 1)[-1], host


class Platform:
    def __init__(self) -> None:
        from contracts import aws
        from etl.local.platform import PlatformState
        from etl.query import LocalEngine, database_name

        up = etl("local", "up", "--detach", "--port", "0")
        if up.returncode != 0:
            raise SystemExit(up.stdout + up.stderr)
        self.state = PlatformState.load()
        os.environ.update(self.state.client_env())
        self.core = self.state.stacks["core-local"].outputs
        self.s3, self.ddb = aws.client("s3"), aws.client("dynamodb")
        self.engine = LocalEngine(database_name("local"))
        names = {self.state.pid: "emulator"} | {pid: host for host, pid in self.state.hosts.items()}
        self.memory = Memory(names)
        self.memory.start()

    def objects(self) -> dict[str, dict[str, Any]]:
        from contracts import progress

        return {r.get("source_key"): r for r in progress.list_objects(self.ddb, self.core["stateTable"])}

    def wait_transformed(self, key: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = self.objects().get(key)
            if row and row.get("stage") in ("transformed", "failed", "rejected"):
                if row["stage"] != "transformed":
                    raise SystemExit(f"{key}: {row['stage']}: {row.get('reason')}")
                return row
            time.sleep(0.2)
        raise SystemExit(f"{key} not transformed within {timeout_s:.0f}s; `etl status` says where it is")

    def query(self, sql: str) -> list[dict[str, Any]]:
        from etl.query import QueryError

        try:
            return self.engine.query(sql).table.to_pylist()
        except QueryError:
            return []  # the table has no partitions yet

    def wait_queryable(self, sql: str, want: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = self.query(sql)
            if rows and int(rows[0]["n"] or 0) >= want:
                return
            time.sleep(0.1)
        raise SystemExit(f"query never saw {want:,} rows: {sql}")

    def hosts_rss_from_logs(self) -> dict[str, float]:
        """Each function's largest REPORT max_rss_mb (the host process's own peak), from its log."""
        out: dict[str, float] = {}
        for log in (Path(os.environ["ETL_LOCAL_DIR"]) / "logs").glob("*.log"):
            for rec in local_records(log, "invocation"):
                out[rec["function"]] = max(out.get(rec["function"], 0.0), rec["max_rss_mb"])
        return out

    def down(self) -> None:
        self.memory.stop.set()
        etl("local", "down")


def land_file(p: Platform, csv_path: Path, sf: float, expected: list[tuple[Any, ...]],
              lake: dict[tuple[int, int], list[Any]]) -> dict[str, Any]:
    """`etl load` the file, then time land → transformed → queryable, and check the lake is exact.

    `lake` accumulates what DuckDB says every file landed so far holds, per partition.
    """
    from decimal import Decimal

    rows = sum(n for _, _, n, _ in expected)
    for y, m, n, total in expected:
        acc = lake.setdefault((y, m), [0, Decimal(0)])
        acc[0], acc[1] = acc[0] + n, acc[1] + Decimal(total)
    before = p.query(f"SELECT count(*) AS n FROM {DATASET}")
    base = int(before[0]["n"]) if before else 0
    p.memory.phase()
    t0 = time.perf_counter()
    load = etl("load", str(csv_path), "--dataset", DATASET, "--prefix", f"sf{sf:g}")
    if load.returncode != 0:
        raise SystemExit(load.stdout + load.stderr)
    landed = time.perf_counter()
    key = f"{DATASET}/sf{sf:g}/{csv_path.name}"
    obj = p.wait_transformed(key, timeout_s=3600)
    transformed = time.perf_counter()
    p.wait_queryable(f"SELECT count(*) AS n FROM {DATASET}", base + rows, timeout_s=600)
    queryable = time.perf_counter()
    peaks = p.memory.phase()
    got = [(int(r["order_year"]), int(r["order_month"]), int(r["n"]), str(r["total"]))
           for r in p.query(PARTITION_SQL)]
    exact = got == [(y, m, n, str(t)) for (y, m), (n, t) in sorted(lake.items())]
    return {"sf": sf, "mb": csv_path.stat().st_size / 1e6, "rows": rows, "upload": landed - t0,
            "transformed": transformed - landed, "queryable": queryable - landed, "chunks": obj.get("chunk_count"),
            "exact": exact, "partitions": len(lake), "peaks": peaks}


def feed(p: Platform, runs: int, day: str = "1999-01-15") -> dict[str, Any]:
    """1,000 new orders of one day (one partition): land → queryable, `runs` times."""
    year, month = int(day[:4]), int(day[5:7])
    sql = (f"SELECT count(*) AS n FROM {DATASET} WHERE order_year = {year} AND order_month = {month} "
           f"AND o_orderdate = DATE '{day}' AND o_orderkey >= 9000000000")
    seconds = []
    p.memory.phase()
    for run in range(runs):
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(DUCKDB_COLUMNS)
        for i in range(1000):
            key = 9_000_000_000 + run * 1000 + i
            w.writerow([key, 1 + i % 1000, "O", f"{100 + i}.25", day, "1-URGENT", "Clerk#000000001", 0, "feed"])
        body = out.getvalue().encode()
        t0 = time.perf_counter()
        p.s3.put_object(Bucket=p.core["landingBucket"], Key=f"{DATASET}/feed/{day}-{run}.csv", Body=body)
        p.wait_queryable(sql, (run + 1) * 1000, timeout_s=300)
        seconds.append(time.perf_counter() - t0)
    return {"runs": seconds, "p50": statistics.median(seconds), "peaks": p.memory.phase()}


def section(results: list[dict[str, Any]], duck: dict[float, float], fed: dict[str, Any] | None,
            hosts: dict[str, float], argv: str, loads: tuple[float, float]) -> str:
    lines = [
        "## End to end on the local platform: TPC-H orders land → queryable, default settings",
        "",
        f"Reproduce: `.venv/bin/python bench/e2e_bench.py {argv} --update-docs` (needs `tpchgen-cli`). "
        f"{machine('moto', 'duckdb')}",
        "",
        "`etl local up` with no flags (128 MiB chunks, two host processes per function, the emulator of "
        "`etl/local/moto_s3.py`); `etl load orders.csv --dataset tpch_orders`; *land → queryable* runs from the "
        "end of the upload to the first query that sees every row. DuckDB `COPY … TO … (PARTITION_BY (order_year, "
        "order_month))` of the same CSV on the same machine is the peer. *Lake exact*: rows and sum(o_totalprice) "
        "of every partition equal DuckDB's over the CSVs landed so far. Peak RSS sampled every 0.2 s per process "
        "during the phase (the emulator is the supervisor process that serves moto).",
        "",
        "| input | upload (s) | chunks | land → transformed (s) | land → queryable (s) | DuckDB COPY (s) | "
        "DuckDB / platform | lake exact | emulator peak RSS (MB) | largest host peak RSS (MB) | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    targets = {1.0: 60, 10.0: 360}
    for r in results:
        emu, host, host_mb = summary(r["peaks"])
        target = targets.get(r["sf"])
        verdict = "" if target is None else f"≤ {target} s: {'met' if r['queryable'] <= target else 'missed'}"
        exact = f"yes ({r['partitions']} partitions)" if r["exact"] else "**no**"
        lines.append(
            f"| SF{r['sf']:g}: {r['mb']:.0f} MB, {r['rows']:,} rows | {r['upload']:.1f} | {r['chunks']} | "
            f"{r['transformed']:.1f} | {r['queryable']:.1f} | {duck[r['sf']]:.1f} | "
            f"{duck[r['sf']] / r['queryable']:.2f}x | {exact} | {emu:,.0f} | {host_mb:,.0f} ({host}) | {verdict} |")
    if fed:
        emu, host, host_mb = summary(fed["peaks"])
        runs = ", ".join(f"{s:.1f}" for s in fed["runs"])
        lines.append(f"| daily feed: 1,000 rows, one partition (p50 of {len(fed['runs'])}: {runs}) | - | 1 | - | "
                     f"{fed['p50']:.2f} | - | - | - | {emu:,.0f} | {host_mb:,.0f} ({host}) | "
                     f"≤ 3 s: {'met' if fed['p50'] <= 3 else 'missed'} |")
    lines += [
        "",
        "Each function host's own peak over the whole run (its REPORT lines): "
        + ", ".join(f"{k.removeprefix('etl-local-')} {v:,.0f} MB" for k, v in sorted(hosts.items())) + ".",
        "",
        f"1-minute load average {loads[0]:.1f} before and {loads[1]:.1f} after the run (2 CPUs).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sf", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--feed-runs", type=int, default=7)
    parser.add_argument("--work", type=Path, default=None, help="where generated CSVs are kept (default: a temp dir)")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    work = args.work or Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    os.environ["ETL_LOCAL_DIR"] = str(work / "platform")
    os.environ["ETL_EXTRA_DATASETS"] = str(ROOT / "bench")
    duck, expected, files = {}, {}, {}
    for sf in args.sf:
        files[sf] = tpch_orders(sf, work, threads=None)
        duck[sf], expected[sf] = duckdb_copy(files[sf], work / f"duck-sf{sf:g}")
        print(f"SF{sf:g}: DuckDB COPY {duck[sf]:.1f}s", flush=True)
    p = Platform()
    results, fed, lake = [], None, {}
    try:
        for sf in args.sf:
            results.append(land_file(p, files[sf], sf, expected[sf], lake))
            print({k: v for k, v in results[-1].items() if k != "peaks"}, summary(results[-1]["peaks"]), flush=True)
        if args.feed_runs:
            fed = feed(p, args.feed_runs)
            print(fed, flush=True)
        hosts = p.hosts_rss_from_logs()
    finally:
        p.down()
    argv = f"--sf {' '.join(f'{s:g}' for s in args.sf)} --feed-runs {args.feed_runs}"
    text = section(results, duck, fed, hosts, argv, (load_before, os.getloadavg()[0]))
    print(text)
    if args.update_docs:
        update_docs("e2e", text)
    if any(r["exact"] is False for r in results):
        raise SystemExit("the lake is not exact")


if __name__ == "__main__":
    main()
