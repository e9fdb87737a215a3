"""Benchmark: TPC-H `orders` CSV to Parquet partitioned by order year/month, single thread.

Contenders, each in its own fresh subprocess (so peak RSS is its own, read with os.wait4):
* platform  — services.transform.core.transform on the local file + parquet.write_partition
              (contract bench/tpch_orders.toml: typed, validated, sorted, lineage, bloom filter);
* duckdb    — COPY (SELECT …, year(), month() FROM read_csv(…)) TO … (FORMAT parquet, PARTITION_BY …);
* pandas    — read_csv + DataFrame.to_parquet(partition_cols=…).
All use zstd; thread counts as given (pandas: one). Each contender's time runs from after its imports and a warm-up
(library lazy initialisation) to the last output byte; runs are interleaved and the median is kept.

    .venv/bin/python bench/transform_bench.py --sf 1              # full run, prints a Markdown table
    .venv/bin/python bench/transform_bench.py --sf 0.1            # quick mode
    .venv/bin/python bench/transform_bench.py --sf 1 --update-docs  # also rewrite docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import machine, tpch_orders, update_docs

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "bench" / "tpch_orders.toml"
CONTENDERS = ("platform", "duckdb", "pandas")
HELPERS = ("writers",)
DUCKDB_COLUMNS = {
    "o_orderkey": "BIGINT",
    "o_custkey": "BIGINT",
    "o_orderstatus": "VARCHAR",
    "o_totalprice": "DECIMAL(15,2)",
    "o_orderdate": "DATE",
    "o_orderpriority": "VARCHAR",
    "o_clerk": "VARCHAR",
    "o_shippriority": "INTEGER",
    "o_comment": "VARCHAR",
}
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: the transform function's environment as deployed (infra/transform.py): pyarrow's mimalloc keeps freed
#: memory for reuse instead of returning it after 1 s, in 4 KiB pages (docs/design/transform-performance.md)
PLATFORM_ENV = {"MIMALLOC_PURGE_DELAY": "-1", "MIMALLOC_ALLOW_THP": "0"}


def _run_platform(csv_path: Path, out: Path, threads: int = 1) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from contracts.datasets import load_dataset_file
    from services.transform.core import transform
    from services.transform.parquet import file_name, write_partition

    pa.set_cpu_count(threads)
    pa.set_io_thread_count(threads)
    dataset = load_dataset_file(CONTRACT)
    pa.array([0])  # warm-up: pyarrow's lazy imports
    start = _started()

    def write(part: Any) -> None:
        folder = out / part.path
        folder.mkdir(parents=True)
        write_partition(part.table, folder / file_name("tpch-orders", 0, part.values), dataset)

    # partitions are independent files: with threads, they are encoded concurrently (pyarrow's writer
    # releases the GIL), as a function with more than one vCPU can write them, each as soon as
    # transform() has it sorted (`ready`), while the next ones are gathered
    with ThreadPoolExecutor(max_workers=threads) as pool:
        written: list[Any] = []
        result = transform(dataset, csv_path, object_id="tpch-orders", source=str(csv_path),
                           ready=lambda part: written.append(pool.submit(write, part)))
        for done in written:
            done.result()
    _report(start, result.rows_good, quarantined=result.rows_quarantined)


def _run_duckdb(csv_path: Path, out: Path, threads: int = 1) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}").fetchall()
    con.execute("SELECT 1").fetchall()  # warm-up
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in DUCKDB_COLUMNS.items()) + "}"
    start = _started()
    con.execute(
        f"""COPY (SELECT *, year(o_orderdate) AS order_year, month(o_orderdate) AS order_month
                  FROM read_csv('{csv_path}', header = true, delim = ',', quote = '"', columns = {columns}))
            TO '{out}' (FORMAT parquet, PARTITION_BY (order_year, order_month), COMPRESSION zstd)"""
    )
    _report(start, None)


def _run_pandas(csv_path: Path, out: Path, threads: int = 1) -> None:
    import pandas as pd
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    pd.DataFrame({"a": [1]}).to_parquet(out.parent / "warm-up.parquet")  # warm-up: engine lazy imports
    start = _started()
    df = pd.read_csv(
        csv_path,
        dtype={"o_orderkey": "int64", "o_custkey": "int64", "o_totalprice": "float64", "o_shippriority": "int32"},
        parse_dates=["o_orderdate"],
    )
    df["order_year"] = df["o_orderdate"].dt.year
    df["order_month"] = df["o_orderdate"].dt.month
    df.to_parquet(out, partition_cols=["order_year", "order_month"], compression="zstd", index=False)
    _report(start, len(df))


def _run_writers(csv_path: Path, out: Path, threads: int = 1) -> None:
    """The Parquet step alone: write_partition (pyarrow) vs DuckDB COPY from the same Arrow tables."""
    import duckdb
    import pyarrow as pa

    from contracts.datasets import load_dataset_file
    from services.transform.core import transform
    from services.transform.parquet import write_partition

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    dataset = load_dataset_file(CONTRACT)
    result = transform(dataset, csv_path, object_id="tpch-orders", source=str(csv_path))
    con = duckdb.connect()
    con.execute("SET threads = 1").fetchall()
    subject = dataset.subject_columns[0]
    report: dict[str, Any] = {}
    for writer in ("pyarrow", "duckdb"):
        folder = out / writer
        folder.mkdir(parents=True)
        files = [folder / f"{i}.parquet" for i in range(len(result.partitions))]
        start, cpu = time.perf_counter(), time.process_time()
        for part, path in zip(result.partitions, files, strict=True):
            if writer == "pyarrow":
                write_partition(part.table, path, dataset)
            else:
                con.register("partition_table", part.table)
                sql = f"COPY (SELECT * FROM partition_table) TO '{path}' (FORMAT parquet, COMPRESSION zstd)"
                con.execute(sql).fetchall()
                con.unregister("partition_table")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        bloom = con.execute(
            f"SELECT count(*) FROM parquet_metadata('{folder}/*.parquet') "
            f"WHERE path_in_schema = '{subject}' AND bloom_filter_length > 0"
        ).fetchall()
        report[writer] = {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "bytes": sum(p.stat().st_size for p in files),
            "subject_bloom_files": bloom[0][0],
            "files": len(files),
        }
    print(json.dumps(report))


def _report(start: float, rows: int | None, **extra: Any) -> None:
    cpu = time.process_time() - _CPU_START[0]
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": cpu, "rows": rows, **extra}))


_CPU_START = [0.0]


def _started() -> float:
    """Start the clocks: wall time for the table, CPU time (all threads) as a noise-free cross-check."""
    _CPU_START[0] = time.process_time()
    return time.perf_counter()


def _output_stats(out: Path) -> dict[str, int]:
    """Bytes, files and rows of the Parquet files under `out`, and where the bytes go."""
    import pyarrow.parquet as pq

    files = sorted(p for p in out.rglob("*.parquet"))
    stats = {"bytes": 0, "files": len(files), "rows_written": 0, "data_bytes": 0, "lineage_bytes": 0}
    for path in files:
        meta = pq.ParquetFile(path).metadata
        stats["bytes"] += path.stat().st_size
        stats["rows_written"] += meta.num_rows
        for g in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                chunk = meta.row_group(g).column(c)
                key = "lineage_bytes" if chunk.path_in_schema.startswith("_source") else "data_bytes"
                stats[key] += chunk.total_compressed_size
    return stats


def _measure(contender: str, csv_path: Path, work: Path, threads: int = 1) -> dict[str, Any]:
    """Run one contender in a fresh interpreter; wall time from inside, peak RSS from wait4."""
    out = work / f"out-{contender}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--contender", contender, "--contender-threads",
           str(threads), str(csv_path), str(out)]
    env = {**os.environ, **SINGLE_THREAD_ENV, "PYTHONPATH": str(ROOT)}
    if contender == "platform":
        env.update(PLATFORM_ENV)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{contender} failed with exit code {proc.returncode}")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    stats = _output_stats(out)
    shutil.rmtree(out, ignore_errors=True)
    return {**result, **stats, "peak_rss_mb": usage.ru_maxrss / 1024}


def _table(sf: float, csv_bytes: int, results: dict[str, list[dict[str, Any]]], runs: int, threads: int = 1) -> str:
    keys = ("seconds", "cpu_seconds", "peak_rss_mb")
    med = {c: {k: statistics.median(r[k] for r in rs) for k in keys} for c, rs in results.items()}
    duck = med["duckdb"]["seconds"]
    duck_cpu = med["duckdb"]["cpu_seconds"]
    times = {c: [r["seconds"] for r in rs] for c, rs in results.items()}
    duck_bytes = results["duckdb"][0]["bytes"]
    lines = [
        f"TPC-H SF{sf:g} `orders`: {csv_bytes / 1e6:.1f} MB of CSV, {results['duckdb'][0]['rows_written']:,} rows; "
        f"median of {runs} runs, {threads} thread(s) each; MB = 10^6 bytes.",
        "",
        "| contender | time (s) | min-max (s) | throughput (MB/s of CSV) | vs DuckDB throughput | CPU time (s) "
        "| vs DuckDB CPU | output (MB) | vs DuckDB bytes | files | rows written | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in results:
        s, r = med[c]["seconds"], results[c][0]
        lines.append(
            f"| {c} | {s:.2f} | {min(times[c]):.2f}-{max(times[c]):.2f} | {csv_bytes / 1e6 / s:.1f} | {duck / s:.2f}x "
            f"| {med[c]['cpu_seconds']:.2f} | {duck_cpu / med[c]['cpu_seconds']:.2f}x "
            f"| {r['bytes'] / 1e6:.1f} "
            f"| {r['bytes'] / duck_bytes:.2f}x | {r['files']} | {r['rows_written']:,} | {med[c]['peak_rss_mb']:.0f} |"
        )
    mine = results["platform"][0]
    lines += [
        "",
        f"Where the platform's bytes go: {mine['data_bytes'] / 1e6:.1f} MB for the nine TPC-H columns "
        f"(DuckDB: {results['duckdb'][0]['data_bytes'] / 1e6:.1f} MB), {mine['lineage_bytes'] / 1e6:.1f} MB for "
        f"the lineage columns, {(mine['bytes'] - mine['data_bytes'] - mine['lineage_bytes']) / 1e6:.1f} MB for "
        "bloom filters, page indexes and footers.",
    ]
    return "\n".join(lines)


def _writers(csv_path: Path, work: Path) -> str:
    """One run of the Parquet-step comparison, as a Markdown table."""
    out = work / "out-writers"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, **SINGLE_THREAD_ENV, **PLATFORM_ENV, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--contender", "writers", str(csv_path), str(out)]
    done = subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
    shutil.rmtree(out, ignore_errors=True)
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    lines = [
        "Parquet step alone (same partition tables, one thread): the platform's writer vs DuckDB `COPY` from Arrow.",
        "",
        "| writer | time (s) | CPU time (s) | output (MB) | files with a bloom filter on the subject column |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in (("pyarrow", "write_partition (pyarrow)"), ("duckdb", "DuckDB COPY … (FORMAT parquet)")):
        r = report[name]
        lines.append(
            f"| {label} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['bytes'] / 1e6:.1f} "
            f"| {r['subject_bloom_files']} of {r['files']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (1 = full, 0.1 = quick)")
    parser.add_argument("--runs", type=int, default=3, help="runs per contender (median reported)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts (pandas runs at 1 only: its CSV reader and writer are single-threaded)")
    parser.add_argument("--contender-threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "etl-transform-bench")
    parser.add_argument("--update-docs", action="store_true", help="rewrite the section in docs/benchmarks.md")
    parser.add_argument("--contender", choices=CONTENDERS + HELPERS, help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        csv_path, out = args.paths
        runners = {"platform": _run_platform, "duckdb": _run_duckdb, "pandas": _run_pandas, "writers": _run_writers}
        runners[args.contender](csv_path, out, args.contender_threads)
        # The report is out; skip interpreter teardown, where pyarrow's dataset writer (used by
        # pandas.to_parquet with partition_cols) intermittently aborts ("terminate called without
        # an active exception") and would fail a finished run.
        sys.stdout.flush()
        os._exit(0)
    args.workdir.mkdir(parents=True, exist_ok=True)
    csv_path = tpch_orders(args.sf, args.workdir)
    load_before = os.getloadavg()[0]
    tables = []
    for threads in args.threads:
        contenders = CONTENDERS if threads == 1 else tuple(c for c in CONTENDERS if c != "pandas")
        results: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
        for run in range(args.runs):
            for c in contenders:
                results[c].append(_measure(c, csv_path, args.workdir, threads))
                print(f"threads {threads} run {run + 1} {c}: {results[c][-1]}", file=sys.stderr)
        rows = {c: {r["rows_written"] for r in rs} for c, rs in results.items()}
        if len({n for s in rows.values() for n in s}) != 1:
            raise SystemExit(f"contenders wrote different row counts: {rows}")
        tables.append(_table(args.sf, csv_path.stat().st_size, results, args.runs, threads))
    load = f"1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the runs"
    table = "\n\n".join([*tables, _writers(csv_path, args.workdir), load])
    print(table)
    if args.update_docs:
        update_docs("transform", _section(args.sf, table, args.runs, " ".join(map(str, args.threads))))


def _section(sf: float, table: str, runs: int, threads: str) -> str:
    return f"""## Transform: TPC-H orders CSV → partitioned Parquet (SF{sf:g})

Reproduce: `.venv/bin/python bench/transform_bench.py --sf {sf:g} --runs {runs} --threads {threads} --update-docs` \
(quick: `--sf 0.1`).
Input generated by `tpchgen-cli csv -s {sf:g} -T orders`; output partitioned by order year/month, zstd.
{machine("pyarrow", "duckdb", "pandas")}

{table}

What each contender does:
* **platform** is the transform service's pure core (`services.transform.core.transform` then
  `parquet.write_partition`), contract `bench/tpch_orders.toml`: every value cast and checked
  (types, nullability, decimals without rounding, calendar dates), rows sorted by
  (o_orderdate, o_orderkey), two lineage columns (`_source_object_id`, `_source_line`), a bloom
  filter on o_custkey, page index and statistics. Its output therefore holds more than the others'.
  It runs with pyarrow's default allocator, mimalloc, set as the function sets it (freed memory kept
  for reuse, 4 KiB pages: `MIMALLOC_PURGE_DELAY=-1`, `MIMALLOC_ALLOW_THP=0`); pyarrow streams the
  CSV in 8 MiB blocks, each cast and checked before the next is read (at one thread the file's
  pieces are all read and scanned first: a reading thread would be a second CPU). What each cut bought, and the
  levers refused (a typed CSV read: pyarrow accepts values the contract refuses):
  docs/design/transform-performance.md.
* **duckdb** `COPY (SELECT *, year(o_orderdate), month(o_orderdate) FROM read_csv(… explicit types …))
  TO … (FORMAT parquet, PARTITION_BY (order_year, order_month), COMPRESSION zstd)`, `SET threads` as given.
* **platform at 2 threads**: the same `transform()` with `pa.cpu_count()` 2, as on a 2-vCPU function:
  the CSV is read in 8 MiB pieces on a thread of its own (the function: ranged S3 GETs, four in
  flight), each scanned there as it arrives (UTF-8, NUL, `\r`, line feeds), and pyarrow parses each
  piece as it is in, on a second thread, while the block before is cast; columns are cast,
  dictionary-encoded and gathered into sort order side by side, in 8 slabs of whole partitions; the
  sort runs beside the dictionary encoding, and the copy it gathers from is joined column by column.
  Each partition's file is encoded by a pool of 2 threads as soon as its slab is gathered (pyarrow
  releases the GIL while it encodes), as the function does.
* **pandas** `read_csv` (C engine, o_totalprice as float64: pandas has no decimal type) then
  `to_parquet(partition_cols=[…], compression="zstd")` through pyarrow with one CPU.

Times exclude interpreter start-up, imports and a warm-up call. CPU time (all threads of the
process over the same span) is the steadier comparison when the load average above exceeds the
CPU count: other jobs then stretch wall times unevenly. Peak RSS is the whole process
(`ru_maxrss` of the contender's own subprocess). Targets (issue #15): platform ≥ 1.0x DuckDB's
throughput at 1 and 2 threads with ≤ 1.1x its bytes, and faster than pandas."""


if __name__ == "__main__":
    main()
