"""Benchmark: erase 10 customers from TPC-H `orders` partitioned by order year, compacted into large files.

Lake: `tpchgen-cli` orders at the given scale factor, written the way the platform writes and
compaction leaves it — one file per year partition, rows sorted by (o_orderdate, o_orderkey), 1M-row
row groups, zstd, statistics, page index, a bloom filter on o_custkey, lineage columns — with the
platform's own writer (services.transform.parquet.write_partition, contract bench/tpch_orders.toml).

Contenders, each in a fresh subprocess (peak RSS via wait4), one thread unless said otherwise:
* platform   — services.erasure: FIND per file (footer statistics, bloom filters read from the
               footer offsets, exact `is_in` on the candidate row groups' subject column), then
               REWRITE of each matched file streamed by row group (layout kept);
* platform-2 — the same, files fanned out over 2 worker processes (the service fans out per
               partition; this machine has 2 CPUs);
* baseline   — S3 Find and Forget's algorithm: FIND scans the subject column of every file; then
               each affected file is read whole and each row tested in Python (`custkey in ids`),
               and the kept rows written with pyarrow's defaults (snappy), as its Fargate task does;
* ff-pandas  — S3 Find and Forget's actual Parquet handler (backend/ecs_tasks/delete_files): per row
               group `to_pandas()`, `isin`, `Table.from_pandas`, written with pyarrow's defaults;
               its FIND is the baseline's full column scan;
* duckdb     — FIND: `SELECT DISTINCT filename … WHERE o_custkey IN (…)` over all files (DuckDB
               prunes with statistics and bloom filters); REWRITE: per affected file
               `COPY (SELECT * … WHERE o_custkey NOT IN (…)) TO … (COMPRESSION zstd)`.
Bytes read are the process's read() bytes (/proc/self/io rchar) over the timed span, so every
contender is measured the same way; bytes rewritten are the output files' sizes.

    .venv/bin/python bench/erasure_bench.py --sf 1                 # prints a Markdown table
    .venv/bin/python bench/erasure_bench.py --sf 10 --update-docs  # also updates docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _harness import machine, update_docs

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "bench" / "tpch_orders.toml"
CONTENDERS = ("platform", "platform-2", "baseline", "ff-pandas", "duckdb")
SUBJECTS = 10
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SALT = "erasure-bench-salt-0123456789"


# -- the lake ----------------------------------------------------------------------------------------------
def dataset() -> Any:
    from contracts.datasets import load_dataset_file

    ds = load_dataset_file(CONTRACT)
    return ds.model_copy(update={"partitioning": ds.partitioning[:1]})  # order_year only: one file per year


def generate(sf: float, cache: Path) -> Path:
    """`tpchgen-cli` orders at `sf` (once per cache)."""
    gen = cache / f"tpch-sf{sf:g}"
    if not (gen / "orders.parquet").exists():
        gen.mkdir(parents=True, exist_ok=True)
        tool = shutil.which("tpchgen-cli") or str(Path(sys.executable).parent / "tpchgen-cli")
        subprocess.run([tool, "parquet", "-s", f"{sf:g}", "-T", "orders", "--output-dir", str(gen)], check=True)
    return gen / "orders.parquet"


def orders_by_year(source_path: Path) -> Iterator[tuple[int, Any]]:
    """(year, that year's orders with lineage columns) sorted by the sort key, one year in memory at a time.

    Lineage as transform records it: one source object, the CSV line (header = line 1) in generation
    order. One pass over the source per year: SF10's whole table, sorted, would need ~6 GB.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = pq.ParquetFile(source_path)
    plain = pa.schema([pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else f.type)
                       for f in source.schema_arrow])
    years: set[int] = set()
    for batch in source.iter_batches(batch_size=1 << 20, columns=["o_orderdate"]):
        years.update(pc.unique(pc.year(batch.column(0))).to_pylist())
    for y in sorted(years):
        parts, line = [], 2
        for batch in source.iter_batches(batch_size=1 << 17):
            n = batch.num_rows
            keep = pc.equal(pc.year(batch.column("o_orderdate")), y)
            t = pa.Table.from_batches([batch.cast(plain)]).append_column(
                "_source_object_id", pa.array(["tpch-orders"] * n)).append_column(
                "_source_line", pa.array(range(line, line + n), pa.int64()))
            parts.append(t.filter(keep))
            line += n
        yield y, pa.concat_tables(parts).sort_by([("o_orderdate", "ascending"), ("o_orderkey", "ascending")])


def build_lake(sf: float, cache: Path) -> Path:
    """TPC-H orders → one Parquet file per order year, as the platform writes and compaction leaves it."""
    lake = cache / f"lake-sf{sf:g}"
    if (lake / "_done").exists():
        return lake
    from services.transform.parquet import lake_schema, write_partition

    ds = dataset()
    source = generate(sf, cache)
    if lake.exists():
        shutil.rmtree(lake)
    for y, part in orders_by_year(source):
        folder = lake / f"order_year={y}"
        folder.mkdir(parents=True)
        write_partition(part.cast(lake_schema(ds)), folder / "part-0000.parquet", ds)
    (lake / "_done").write_text("ok")
    return lake


def lake_files(lake: Path) -> list[Path]:
    return sorted(lake.glob("order_year=*/*.parquet"))


def pick_subjects(lake: Path, seed: int = 42) -> list[int]:
    import pyarrow.parquet as pq

    keys = set()
    for f in lake_files(lake):
        keys.update(pq.read_table(f, columns=["o_custkey"])["o_custkey"].to_pylist()[::97])
    return sorted(random.Random(seed).sample(sorted(keys), SUBJECTS))


# -- measurement helpers (inside a contender's process) ----------------------------------------------------
def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the fan-out's worker processes)."""
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def _report(start: tuple[float, float, int], **fields: Any) -> None:
    seconds, cpu, rchar = time.perf_counter() - start[0], _cpu() - start[1], _rchar() - start[2]
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "bytes_read": rchar, **fields}))


def _started() -> tuple[float, float, int]:
    return time.perf_counter(), _cpu(), _rchar()


def _single_thread() -> None:
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


# -- contenders ----------------------------------------------------------------------------------------------
def _platform_file(path: str, out: str, subjects: list[int]) -> dict[str, Any]:
    """FIND then REWRITE of one file with the service's own code (what a worker does per partition)."""
    from services.erasure.blobs import LocalBlob
    from services.erasure.find import probe
    from services.erasure.rewrite import rewrite
    from services.erasure.subjects import Subjects

    columns = Subjects.of([str(s) for s in subjects], SALT.encode()).columns(dataset())
    rchar = _rchar()  # after the imports: only the lake's bytes count
    found = probe(LocalBlob(path), columns)
    result: dict[str, Any] = {"footers": 1, "scanned": found.stats.files_scanned, "removed": 0, "written": 0,
                              "copied": 0, "rows_in": 0, "matched": found.matched}
    if found.matched:
        r = rewrite(path, lambda: out, columns, row_groups=found.matched_row_groups)
        result.update(removed=r.rows_removed, rows_in=r.rows_in, written=os.path.getsize(out) if r.rows_out else 0,
                      copied=r.bytes_copied)
    result["rchar"] = _rchar() - rchar
    return result


def _run_platform(lake: Path, out: Path, subjects: list[int], workers: int = 1) -> None:
    import pyarrow as pa

    _single_thread()
    pa.array([0])
    files = lake_files(lake)
    jobs = [(str(f), str(out / f"{i}.parquet"), subjects) for i, f in enumerate(files)]
    start = _started()
    if workers == 1:
        results = [_platform_file(*j) for j in jobs]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, initializer=_single_thread) as pool:
            results = list(pool.map(_platform_file, *zip(*jobs, strict=True)))
    affected = [r for r in results if r["matched"]]  # reaped workers' reads are in our rchar already
    _report(start, files_opened=sum(r["scanned"] for r in results), footers=len(results),
            files_rewritten=len(affected), rows_removed=sum(r["removed"] for r in results),
            bytes_rewritten=sum(r["written"] for r in results), bytes_copied=sum(r["copied"] for r in results),
            bytes_affected=sum(os.path.getsize(files[i]) for i, r in enumerate(results) if r["matched"]))


def _full_scan(files: list[Path], subjects: list[int]) -> list[Path]:
    """Find-and-Forget's FIND: the subject column of every file (Athena `SELECT DISTINCT "$path" … IN (…)`)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    value_set = pa.array(subjects, pa.int64())
    return [f for f in files if pc.any(pc.is_in(pq.read_table(f, columns=["o_custkey"])["o_custkey"],
                                                value_set=value_set)).as_py()]


def _run_baseline(lake: Path, out: Path, subjects: list[int]) -> None:
    import pyarrow as pa
    import pyarrow.compute  # _full_scan's, imported before the clock
    import pyarrow.parquet as pq

    _single_thread()
    pa.array([0])
    files = lake_files(lake)
    wanted = set(subjects)
    start = _started()
    affected = _full_scan(files, subjects)
    removed = written = 0
    for i, f in enumerate(affected):
        table = pq.read_table(f)  # the whole object in memory
        keep = [c not in wanted for c in table["o_custkey"].to_pylist()]  # one Python test per row
        kept = table.filter(pa.array(keep))
        removed += table.num_rows - kept.num_rows
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(sink, kept.schema) as writer:  # pyarrow defaults: snappy
            writer.write_table(kept)
        target = out / f"{i}.parquet"
        target.write_bytes(sink.getvalue().to_pybytes())
        written += target.stat().st_size
    _report(start, files_opened=len(files), footers=len(files), files_rewritten=len(affected), rows_removed=removed,
            bytes_rewritten=written, bytes_affected=sum(f.stat().st_size for f in affected))


def _run_ff_pandas(lake: Path, out: Path, subjects: list[int]) -> None:
    import pandas  # noqa: F401 - imported before the clock, like the other contenders' libraries
    import pyarrow as pa
    import pyarrow.compute  # _full_scan's, imported before the clock
    import pyarrow.parquet as pq

    _single_thread()
    pa.array([0])
    files = lake_files(lake)
    start = _started()
    affected = _full_scan(files, subjects)
    removed = written = 0
    for i, f in enumerate(affected):
        parquet_file = pq.ParquetFile(f, memory_map=False)
        schema = parquet_file.metadata.schema.to_arrow_schema().remove_metadata()
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(sink, schema) as writer:
            for g in range(parquet_file.num_row_groups):
                df = parquet_file.read_row_group(g).to_pandas()
                before = len(df.index)
                df = df[~df["o_custkey"].isin(subjects)]
                removed += before - len(df.index)
                writer.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False))
        target = out / f"{i}.parquet"
        target.write_bytes(sink.getvalue().to_pybytes())
        written += target.stat().st_size
    _report(start, files_opened=len(files), footers=len(files), files_rewritten=len(affected), rows_removed=removed,
            bytes_rewritten=written, bytes_affected=sum(f.stat().st_size for f in affected))


def _run_duckdb(lake: Path, out: Path, subjects: list[int]) -> None:
    import duckdb

    files = lake_files(lake)
    con = duckdb.connect()
    con.execute("SET threads = 1").fetchall()
    con.execute("SELECT 1").fetchall()
    ids = ", ".join(map(str, subjects))
    listing = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    start = _started()
    affected = [r[0] for r in con.execute(
        f"SELECT DISTINCT filename FROM read_parquet({listing}, filename = true) WHERE o_custkey IN ({ids})"
    ).fetchall()]
    removed = written = 0
    for i, f in enumerate(sorted(affected)):
        target = out / f"{i}.parquet"
        before = con.execute(f"SELECT count(*) FROM read_parquet('{f}')").fetchone()[0]
        con.execute(f"COPY (SELECT * FROM read_parquet('{f}') WHERE o_custkey NOT IN ({ids})) TO '{target}' "
                    "(FORMAT parquet, COMPRESSION zstd)").fetchall()
        removed += before - con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()[0]
        written += target.stat().st_size
    _report(start, files_opened=len(files), footers=len(files), files_rewritten=len(affected), rows_removed=removed,
            bytes_rewritten=written, bytes_affected=sum(Path(f).stat().st_size for f in affected))


def run_contender(name: str, lake: Path, subjects: list[int]) -> dict[str, Any]:
    """Run one contender in a fresh interpreter; its JSON line plus the child's peak RSS."""
    out = Path(tempfile.mkdtemp(prefix=f"erasure-{name}-"))
    try:
        env = {**os.environ, **SINGLE_THREAD_ENV, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, __file__, "--child", name, "--lake", str(lake), "--out", str(out),
                                 "--subjects", ",".join(map(str, subjects))], stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise RuntimeError(f"{name} failed with status {status}")
        result = json.loads(stdout.decode().strip().splitlines()[-1])
        check_output(out, subjects)
        return {**result, "peak_rss_mb": usage.ru_maxrss / 1024}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def check_output(out: Path, subjects: list[int]) -> None:
    """Every contender's rewritten files must hold no subject row."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for f in out.glob("*.parquet"):
        col = pq.read_table(f, columns=["o_custkey"])["o_custkey"]
        if pc.any(pc.is_in(col, value_set=pa.array(subjects, pa.int64()))).as_py():
            raise AssertionError(f"{f} still holds a subject row")


# -- the report ----------------------------------------------------------------------------------------------
def mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"


def render(sf: float, lake: Path, results: dict[str, list[dict[str, Any]]], runs: int) -> str:
    import pyarrow.parquet as pq

    files = lake_files(lake)
    size = sum(f.stat().st_size for f in files)
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    groups = sum(pq.ParquetFile(f).metadata.num_row_groups for f in files)
    med = {name: {k: statistics.median(r[k] for r in rs) if isinstance(rs[0][k], int | float) else rs[0][k]
                  for k in rs[0]} for name, rs in results.items()}
    base = med["baseline"]["seconds"]
    lines = [
        f"TPC-H SF{sf:g} `orders`: {rows:,} rows in {len(files)} files (one per order year, {groups} row groups "
        f"of ≤1M rows), {mb(size)} MB; 10 customers erased; median of {runs} runs; MB = 10^6 bytes.",
        "",
        "| contender | time (s) | vs baseline | CPU (s) | files opened | files rewritten | rows removed | "
        "bytes read (MB) | bytes rewritten (MB) | of which re-encoded (MB) | rewritten / affected | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in CONTENDERS:
        if name not in med:
            continue
        r = med[name]
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {base / r['seconds']:.2f}x | {r['cpu_seconds']:.2f} | "
            f"{r['files_opened']} | {r['files_rewritten']} | {r['rows_removed']:,} | {mb(r['bytes_read'])} | "
            f"{mb(r['bytes_rewritten'])} | {mb(r['bytes_rewritten'] - r.get('bytes_copied', 0))} | "
            f"{r['bytes_rewritten'] / max(1, r['bytes_affected']):.2f} | {r['peak_rss_mb']:.0f} |")
    p, p2, ff = med["platform"], med.get("platform-2", med["platform"]), med.get("ff-pandas")
    reencoded = p["bytes_rewritten"] - p.get("bytes_copied", 0)
    lines += ["", NOTES.format(
        ratio=base / p2["seconds"], ratio1=base / p["seconds"],
        bytes_ratio=p["bytes_rewritten"] / max(1, p["bytes_affected"]),
        ff=(f" ({ff['seconds'] / p2['seconds']:.1f}x against Find and Forget's actual pandas handler)" if ff else ""),
        verdict="met" if base / p2["seconds"] >= 5 else "not met", reencoded=mb(reencoded), size=mb(size),
        share=reencoded / max(1, p["bytes_rewritten"]),
        baseline_bytes=med["baseline"]["bytes_rewritten"] / max(1, med["baseline"]["bytes_affected"]))]
    return "\n".join(lines)


NOTES = """What each contender does is in `bench/erasure_bench.py`'s docstring; all write the affected files to local
disk, one thread each except `platform-2`. Times exclude interpreter start-up and imports; CPU includes worker
processes; bytes read are read() bytes of the process (and its reaped workers) over the timed span; peak RSS is the
contender's own subprocess.

Targets: bytes rewritten ≤ 1.2x the bytes of the files that hold a subject — {bytes_ratio:.2f}x; at least 5x faster than
the Find-and-Forget baseline — **{verdict}**: {ratio1:.2f}x on one core, {ratio:.2f}x with the service's per-partition
fan-out on this 2-CPU machine{ff}.

The 10 customers' 170 orders are spread evenly over the years, so every file and every one of the 20 row groups holds
a subject and FIND rules none out (o_custkey's min/max span the key range in each row group and every bloom filter
answers "maybe"). But they sit in about a fifth of the pages: the platform copies every page that holds no removed row
byte for byte and re-encodes only the others (`services/erasure/splice.py`; {reencoded} of the {size} MB, {share:.0%}
of what it writes), then rebuilds the column and offset indexes, statistics and bloom filters from the rows left.
Every other contender decodes and re-encodes all of it. The platform also keeps the lake's layout (zstd, dictionaries,
bloom filters, page index, sort order) where the baseline leaves {baseline_bytes:.2f}x bigger snappy files without
bloom filters, and holds one row group's survivors at a time where the baseline holds whole objects. The same
lake is the erasure-lake bench's *dense* workload, against the same Find-and-Forget algorithm."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sf", type=float, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "etl-erasure-bench")
    ap.add_argument("--update-docs", action="store_true")
    ap.add_argument("--only", choices=CONTENDERS, action="append")
    ap.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    ap.add_argument("--lake", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--subjects", help=argparse.SUPPRESS)
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        sys.path.insert(0, str(ROOT))
        subjects = [int(s) for s in a.subjects.split(",")]
        if a.child.startswith("platform"):
            _run_platform(a.lake, a.out, subjects, workers=2 if a.child == "platform-2" else 1)
        else:
            {"baseline": _run_baseline, "ff-pandas": _run_ff_pandas, "duckdb": _run_duckdb}[a.child](
                a.lake, a.out, subjects)
        return
    if a.prepare:  # in its own process, so the contenders do not inherit a big parent's memory
        sys.path.insert(0, str(ROOT))
        lake = build_lake(a.sf, a.cache)
        print(json.dumps({"lake": str(lake), "subjects": pick_subjects(lake)}))
        return
    sys.path.insert(0, str(ROOT))
    a.cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prepared = subprocess.run([sys.executable, __file__, "--prepare", "--sf", f"{a.sf:g}", "--cache", str(a.cache)],
                              check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    info = json.loads(prepared.stdout.strip().splitlines()[-1])
    lake, subjects = Path(info["lake"]), info["subjects"]
    print(f"lake ready in {time.perf_counter() - t0:.0f}s: {lake}", file=sys.stderr)
    results: dict[str, list[dict[str, Any]]] = {}
    for run in range(a.runs):
        for name in a.only or CONTENDERS:  # interleaved: a slow phase of the machine hits everyone
            results.setdefault(name, []).append(run_contender(name, lake, subjects))
            print(f"run {run + 1} {name}: {results[name][-1]['seconds']:.2f}s", file=sys.stderr)
    removed = {r["rows_removed"] for rs in results.values() for r in rs}
    if len(removed) != 1:
        raise AssertionError(f"contenders disagree on the rows to remove: {removed}")
    body = render(a.sf, lake, results, a.runs)
    section = "\n".join([
        f"## Erasure: 10 customers out of TPC-H orders (SF{a.sf:g})", "",
        f"Reproduce: `.venv/bin/python bench/erasure_bench.py --sf {a.sf:g} --update-docs` (bench extra: "
        "`pip install -e .[bench]` for tpchgen-cli).", machine("pyarrow", "duckdb"), "", body, ""])
    print(section)
    if a.update_docs:
        update_docs("erasure", section)


if __name__ == "__main__":
    main()
