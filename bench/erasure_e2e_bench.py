"""Erasure at real size, end to end on the local platform, checked by an independent scan.

    .venv/bin/python bench/erasure_e2e_bench.py [--sf 1] [--subjects 10] [--objects 8] [--update-docs]

1. TPC-H orders at the scale factor (`tpchgen-cli`, 1.5 M rows at SF1) become one JSON Lines object
   of the deployed `orders` contract (o_orderkey → order_id, o_custkey → customer_id, o_totalprice
   → amount, o_orderstatus → status, o_orderdate → order_date), split in `--objects` parts (a feed
   landed in parts; one 150 MB object works too but the emulator serves ranged reads of it slowly),
   and landed on the local platform (started with its defaults, except transform's chunk size: the
   local 64 KiB demo setting would make 2,500 chunks; 128 MiB is the AWS default).
2. Once transformed, one erasure request for `--subjects` customers (the ones with the most orders)
   runs to its terminal state.
3. An independent scan (this file's own code, none of the service's) reads every object version of
   every bucket and every item of every table: Parquet is decoded row by row, with its dictionary
   pages (string columns through pyarrow's dictionary reader, integer columns by decompressing the
   dictionary page itself), its footer statistics and key-value metadata, and its bloom filters are
   probed with DuckDB; gzip is decompressed; JSON text is searched for the customers' ids and the
   erased orders' ids; DynamoDB items are walked for the ids. Any hit is a survivor.
4. Every other row is intact: count and sum(amount) of the lake (current Glue locations) equal
   DuckDB's count and sum(o_totalprice) over the source without the erased customers.
Time and peak memory (VmHWM) of the emulator (the supervisor process running moto) and of every
function host are recorded. A watchdog stops the platform if a process passes `--max-rss-gb`.
Where the erasure's time goes is read back from the run's record (when each phase began) and the
function hosts' logs (invocations and their handler time): see `timeline`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _harness import etl, local_records, machine, update_docs  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "etl-bench-cache"
SETTINGS = ("transform:chunkBytes=134217728",)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# -- data ------------------------------------------------------------------------------------------
def tpch_orders(sf: float) -> Path:
    out = CACHE / f"tpch-sf{sf:g}"
    if not (out / "orders.parquet").exists():
        out.mkdir(parents=True, exist_ok=True)
        tool = shutil.which("tpchgen-cli") or str(Path(sys.executable).parent / "tpchgen-cli")
        if not Path(tool).exists() and not shutil.which(tool):
            raise SystemExit("tpchgen-cli not found: .venv/bin/pip install tpchgen-cli (the bench extra)")
        subprocess.run([tool, "parquet", "-s", f"{sf:g}", "-T", "orders", "--output-dir", str(out)], check=True)
    return out / "orders.parquet"


def orders_jsonl(source: Path, objects: int) -> list[bytes]:
    """The orders as `objects` JSON Lines objects of about equal size (a feed split in parts)."""
    import pyarrow.parquet as pq

    t = pq.read_table(source, columns=["o_orderkey", "o_custkey", "o_totalprice", "o_orderstatus", "o_orderdate"])
    cols = [t[c].to_pylist() for c in t.column_names]
    lines = [f'{{"order_id": {k}, "customer_id": {c}, "amount": {p:.2f}, "status": "{s}", "order_date": "{d}"}}'
             for k, c, p, s, d in zip(*cols, strict=True)]
    step = -(-len(lines) // objects)
    return [("\n".join(lines[i : i + step]) + "\n").encode() for i in range(0, len(lines), step)]


def pick_subjects(source: Path, n: int) -> tuple[list[int], set[int], dict[str, float]]:
    """The n customers with the most orders, their order keys, and what the lake must keep."""
    import duckdb

    con = duckdb.connect()
    subjects = [r[0] for r in con.execute(
        f"SELECT o_custkey FROM '{source}' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT {n}").fetchall()]
    ids = ",".join(map(str, subjects))
    orders = {r[0] for r in con.execute(f"SELECT o_orderkey FROM '{source}' WHERE o_custkey IN ({ids})").fetchall()}
    rows, total = con.execute(
        f"SELECT count(*), sum(o_totalprice) FROM '{source}' WHERE o_custkey NOT IN ({ids})").fetchone()
    return subjects, orders, {"rows": int(rows), "amount": float(total)}


# -- memory ----------------------------------------------------------------------------------------
class MemoryWatch(threading.Thread):
    """Samples VmRSS/VmHWM of the emulator and function hosts every second; trips past the limit."""

    def __init__(self, pids: dict[str, int], limit_bytes: int) -> None:
        super().__init__(daemon=True)
        self.pids, self.limit = pids, limit_bytes
        self.peak: dict[str, int] = Counter()
        self.tripped: str | None = None
        self.stop = threading.Event()

    @staticmethod
    def _status(pid: int) -> dict[str, int]:
        out = {}
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) * 1024
        except OSError:
            pass
        return out

    def run(self) -> None:
        while not self.stop.wait(1.0):
            for name, pid in self.pids.items():
                s = self._status(pid)
                self.peak[name] = max(self.peak[name], s.get("VmHWM", 0), s.get("VmRSS", 0))
                if s.get("VmRSS", 0) > self.limit and not self.tripped:
                    self.tripped = f"{name} (pid {pid}) passed {self.limit / 2**30:.1f} GB RSS"


# -- the independent scan -------------------------------------------------------------------------
ID_COLUMNS = {"customer_id", "o_custkey"}
ORDER_COLUMNS = {"order_id", "o_orderkey"}


class Scan:
    def __init__(self, customers: set[int], orders: set[int]) -> None:
        self.customers, self.orders = customers, orders
        self.hits: list[str] = []
        self.n: Counter = Counter()
        self.json_ids = re.compile(r'"(customer_id|o_custkey|order_id|o_orderkey)"\s*:\s*"?(-?\d+)')

    def _values(self, column: str) -> set[int]:
        return self.customers if column in ID_COLUMNS else self.orders if column in ORDER_COLUMNS else set()

    def parquet(self, where: str, body: bytes) -> None:
        import duckdb
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        self.n["parquet"] += 1
        meta = pq.ParquetFile(pa.BufferReader(body))
        strings = [f.name for f in meta.schema_arrow if pa.types.is_string(f.type) or pa.types.is_binary(f.type)]
        pf = pq.ParquetFile(pa.BufferReader(body), read_dictionary=strings)
        md = pf.metadata
        for k, v in (md.metadata or {}).items():
            if k != b"ARROW:schema" and self._text_ids(k + b" " + v):
                self.hits.append(f"{where}: footer metadata")
        names = pf.schema_arrow.names
        for r in range(md.num_row_groups):
            t = pf.read_row_group(r)
            self.n["rows"] += t.num_rows
            for i, name in enumerate(names):
                values = self._values(name)
                chunk = md.row_group(r).column(i)
                col = t[name]
                if pa.types.is_dictionary(col.type):
                    self.n["dictionaries"] += 1
                if not values:
                    continue
                hit = pc.sum(pc.is_in(col, value_set=pa.array(sorted(values), pa.int64()))).as_py()
                if hit:
                    self.hits.append(f"{where}: {hit} row(s) in {name}")
                if chunk.is_stats_set and chunk.statistics.has_min_max:
                    self.n["statistics"] += 1
                    if chunk.statistics.min in values or chunk.statistics.max in values:
                        self.hits.append(f"{where}: statistics of {name}")
                if chunk.has_dictionary_page:
                    for v in self._int_dictionary(body, chunk):
                        if v in values:
                            self.hits.append(f"{where}: dictionary page of {name}")
                            break
        bloom_cols = [md.row_group(0).column(i).path_in_schema for i in range(md.num_columns)
                      if md.num_row_groups and md.row_group(0).column(i).bloom_filter_offset]
        if bloom_cols:
            with tempfile.NamedTemporaryFile(suffix=".parquet") as f:
                f.write(body)
                f.flush()
                con = duckdb.connect()
                for col in bloom_cols:
                    for v in sorted(self._values(col)):
                        for row in con.execute("SELECT bloom_filter_excludes FROM parquet_bloom_probe(?, ?, ?)",
                                               [f.name, col, v]).fetchall():
                            self.n["bloom_probes"] += 1
                            self.n["bloom_maybe"] += int(row[0] is not True)

    def _int_dictionary(self, body: bytes, chunk: Any) -> list[int]:
        """Integer dictionary pages, decoded here: the zstd frame after the page header, PLAIN int32/int64."""
        import numpy as np
        import pyarrow as pa

        if chunk.physical_type not in ("INT32", "INT64") or chunk.compression != "ZSTD":
            return []
        start = chunk.dictionary_page_offset
        span = body[start : chunk.data_page_offset]
        at = span.find(ZSTD_MAGIC)
        if at < 0:
            return []
        raw = pa.Codec("zstd").decompress(span[at:], decompressed_size=1 << 26, asbytes=True)
        self.n["int_dictionaries"] += 1
        return np.frombuffer(raw, dtype="<i8" if chunk.physical_type == "INT64" else "<i4").tolist()

    def _text_ids(self, text: bytes) -> bool:
        for m in self.json_ids.finditer(text.decode("utf-8", "replace")):
            if int(m.group(2)) in self._values(m.group(1)):
                return True
        return False

    def text(self, where: str, body: bytes) -> None:
        self.n["text_bytes"] += len(body)
        if self._text_ids(body):
            self.hits.append(f"{where}: JSON text")

    def obj(self, where: str, body: bytes) -> None:
        self.n["objects"] += 1
        if body[:4] == b"PAR1":
            try:
                self.parquet(where, body)
            except Exception as exc:  # a Parquet file the scan cannot read is reported, not skipped
                self.hits.append(f"{where}: unreadable Parquet ({type(exc).__name__})")
            return
        if body[:2] == b"\x1f\x8b":
            self.n["gzip"] += 1
            body = gzip.decompress(body)
        self.text(where, body)

    def item(self, where: str, value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            if set(value) <= {"S", "N", "B", "SS", "NS", "L", "M", "BOOL", "NULL", "BS"} and len(value) == 1:
                (kind, v), = value.items()
                if kind == "S":
                    try:
                        self.item(where, json.loads(v), key)
                    except (ValueError, TypeError):
                        self._leaf(where, key, v)
                elif kind == "N":
                    self._leaf(where, key, v)
                elif kind in ("L", "SS", "NS"):
                    for x in v:
                        self.item(where, x if isinstance(x, dict) else {"S": x}, key)
                elif kind == "M":
                    for k, x in v.items():
                        self.item(where, x, k)
                return
            for k, x in value.items():
                self.item(where, x, k)
        elif isinstance(value, list):
            for x in value:
                self.item(where, x, key)
        else:
            self._leaf(where, key, value)

    def _leaf(self, where: str, key: str, value: Any) -> None:
        text = str(value).strip()
        if not re.fullmatch(r"-?\d+", text):
            return
        v = int(text)
        if key in ID_COLUMNS | {"subject_ids", "ids"} and v in self.customers:
            self.hits.append(f"{where}: {key}")
        if key in ORDER_COLUMNS and v in self.orders:
            self.hits.append(f"{where}: {key}")


def scan_environment(customers: set[int], orders: set[int]) -> Scan:
    from botocore.exceptions import ClientError

    from contracts import aws

    scan = Scan(customers, orders)
    s3 = aws.client("s3")
    for b in s3.list_buckets()["Buckets"]:
        bucket = b["Name"]
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []):
                try:
                    body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
                except ClientError as exc:  # deleted since the listing (the platform is live): not a survivor
                    if exc.response.get("Error", {}).get("Code") in ("NoSuchVersion", "NoSuchKey"):
                        scan.n["vanished"] += 1
                        continue
                    raise
                scan.n["versions"] += 1
                scan.obj(f"s3://{bucket}/{v['Key']}?versionId={v['VersionId']}", body)
    ddb = aws.client("dynamodb")
    for table in ddb.list_tables()["TableNames"]:
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                scan.n["items"] += 1
                scan.item(f"dynamodb {table} {item.get('pk', {}).get('S', '')}/{item.get('sk', {}).get('S', '')}",
                          item)
    return scan


def partition_files(database: str) -> Iterator[list[str]]:
    """Per partition of `orders`, the files under its Glue location (what a reader sees)."""
    import pyarrow.fs as pafs

    from contracts import aws

    glue, fs = aws.client("glue"), aws.s3_filesystem()
    for page in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName="orders"):
        for p in page["Partitions"]:
            loc = p["StorageDescriptor"]["Location"].removeprefix("s3://").rstrip("/")
            yield [i.path for i in fs.get_file_info(pafs.FileSelector(loc, allow_not_found=True)) if i.is_file]


def lake_totals(database: str) -> dict[str, float]:
    """count and sum(amount) of what a reader sees: the files under each partition's Glue location."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from contracts import aws

    fs = aws.s3_filesystem()
    rows, amount = 0, 0.0
    for files in partition_files(database):
        for path in files:
            t = pq.read_table(path, filesystem=fs, columns=["amount"])
            rows += t.num_rows
            amount += float(pc.sum(t["amount"]).as_py() or 0)
    return {"rows": rows, "amount": amount}


# -- the run ---------------------------------------------------------------------------------------
def wait_transformed(keys: list[str], timeout_s: float, watch: MemoryWatch) -> None:
    from contracts import aws, progress
    from etl.local.platform import PlatformState

    table = PlatformState.load().output("core", "stateTable")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not watch.tripped:
        rows = {r.get("source_key"): r for r in progress.list_objects(aws.client("dynamodb"), table)}
        failed = [k for k in keys if rows.get(k, {}).get("stage") == "failed"]
        if failed:
            raise SystemExit(f"the load failed: {[rows[k] for k in failed][:2]}")
        if all(rows.get(k, {}).get("stage") == "transformed" for k in keys):
            return
        time.sleep(2)
    raise SystemExit(watch.tripped or "the load did not finish in time")


def wait_compacted(database: str, timeout_s: float, watch: MemoryWatch) -> float:
    """Seconds until every partition of `orders` is one file under its Glue location (compaction is done):
    an erasure on the lake as compaction leaves it, the usual case for data older than a few minutes."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s and not watch.tripped:
        counts = [len(files) for files in partition_files(database)]
        if counts and max(counts) == 1:
            return time.monotonic() - start
        time.sleep(5)
    raise SystemExit(watch.tripped or "compaction did not finish in time")


def erase(subjects: list[int], timeout_s: float, watch: MemoryWatch) -> dict[str, Any]:
    from etl.erasure_cli import api_for

    client = api_for("local")
    _, filed = client.call("POST", "/erasure-requests", {"subject_ids": [str(s) for s in subjects],
                                                         "reason": "real-size erasure benchmark"})
    client.call("POST", "/erasure-runs")
    deadline = time.monotonic() + timeout_s
    r: dict[str, Any] = filed
    while time.monotonic() < deadline and not watch.tripped:
        _, r = client.call("GET", f"/erasure-requests/{filed['id']}")
        if r["state"] in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        time.sleep(2)
    status, cert = client.call("GET", f"/erasure-requests/{filed['id']}/certificate")
    return {"request": r, "certificate": cert if status == 200 else None}


PHASES = ("find", "lake", "raw", "purge", "verify")


def timeline(st: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Seconds from the request to each phase's start and end (the run record's history; verify ends when
    the request is terminal), and per erasure function its invocations and their summed handler time."""
    from contracts import aws
    from etl.local.paths import state_dir

    run_id = request.get("run_id")
    item = aws.client("dynamodb").get_item(TableName=st.output("erasure", "erasureTable"),
                                           Key={"pk": {"S": "erasure"}, "sk": {"S": f"run#{run_id}"}},
                                           ConsistentRead=True).get("Item")
    history = json.loads(item["body"]["S"])["history"] if item else []
    received = request["history"][0]["at"]
    ended = request["history"][-1]["at"]
    entered = [(h["phase"], h["at"]) for h in history if h["phase"] in PHASES]
    phases: dict[str, float] = {}
    for n, (phase, at) in enumerate(entered):
        end = entered[n + 1][1] if n + 1 < len(entered) else ended
        phases[phase] = phases.get(phase, 0.0) + end - at
    out: dict[str, Any] = {"to_first_phase": (entered[0][1] - received) if entered else None, "phases": phases,
                           "total": ended - received, "functions": {}}
    for fn in ("erasure-run", "erasure-worker"):
        log = state_dir() / "logs" / f"etl-local-{fn}.log"
        calls = list(local_records(log, "invocation")) if log.exists() else []
        out["functions"][fn] = {"invocations": len(calls), "handler_s": sum(c["duration_ms"] for c in calls) / 1000}
    return out


def wait_ready(state_cls: Any, timeout_s: float = 900) -> Any:
    """The platform's state once ready (a loaded machine may need longer than `etl local up` waits)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = state_cls.load()
        if st is not None and st.status == "ready":
            return st
        if st is not None and st.status == "failed":
            raise SystemExit(f"the local platform failed to start: {st.error}")
        time.sleep(2)
    raise SystemExit("the local platform did not become ready")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from contracts import aws
    from etl.local.platform import PlatformState

    source = tpch_orders(args.sf)
    subjects, orders, expected = pick_subjects(source, args.subjects)
    parts = orders_jsonl(source, args.objects)
    jsonl_mb = sum(len(p) for p in parts) / 1e6
    up = etl("local", "up", "--detach", "--port", "0", *[a for s in SETTINGS for a in ("--set", s)])
    if up.returncode != 0 and "not ready" not in up.stdout + up.stderr:
        raise SystemExit(up.stdout + up.stderr)
    watch = None
    try:
        st = wait_ready(PlatformState)
        os.environ.update(st.client_env())
        watch = MemoryWatch({"emulator": st.pid, **st.hosts}, int(args.max_rss_gb * 2**30))
        watch.start()
        keys = [f"orders/tpch/orders-sf{args.sf:g}-{i:03d}.jsonl" for i in range(len(parts))]
        t0 = time.perf_counter()
        for key, body in zip(keys, parts, strict=True):
            aws.client("s3").put_object(Bucket=st.output("core", "landingBucket"), Key=key, Body=body)
        parts.clear()
        wait_transformed(keys, args.timeout, watch)
        t_load = time.perf_counter() - t0
        t_compact = (wait_compacted(st.output("core", "glueDatabase"), args.timeout, watch)
                     if args.after_compaction else None)
        t1 = time.perf_counter()
        outcome = erase(subjects, args.timeout, watch)
        t_erase = time.perf_counter() - t1
        spent = timeline(st, outcome["request"])
        if watch.tripped:
            raise SystemExit(f"memory watchdog: {watch.tripped}")
        t2 = time.perf_counter()
        scan = scan_environment(set(subjects), orders)
        t_scan = time.perf_counter() - t2
        lake = lake_totals(st.output("core", "glueDatabase"))
        return {"sf": args.sf, "rows": expected["rows"] + len(orders), "mb": os.path.getsize(source) / 1e6,
                "jsonl_mb": jsonl_mb, "objects": len(keys), "subjects": len(subjects), "orders_erased": len(orders),
                "state": outcome["request"]["state"], "request": outcome["request"],
                "certificate": outcome["certificate"], "t_load": t_load, "t_compact": t_compact, "t_erase": t_erase,
                "t_scan": t_scan,
                "scan_hits": scan.hits, "scan": dict(scan.n), "lake": lake, "expected": expected,
                "peak": dict(watch.peak), "timeline": spent}
    finally:
        if watch is not None:
            watch.stop.set()
        etl("local", "down")


def _spliced_row(cert: dict[str, Any]) -> str:
    """How the lake files were rewritten, from the certificate's file outcomes: the pages holding no erased
    row copied undecoded (a splice, services/erasure/splice.py) or every page re-encoded."""
    files = [f for d in (cert.get("datasets") or {}).values() for p in d.get("partitions", [])
             for f in p.get("files", []) if f.get("new_key")]
    copied = sum(f.get("bytes_copied", 0) for f in files)
    written = sum(f.get("bytes_out", 0) for f in files)
    spliced = sum(1 for f in files if f.get("bytes_copied"))
    why = Counter(f.get("whole_because") or "?" for f in files if not f.get("bytes_copied")).most_common(3)
    because = "; whole because: " + ", ".join(f"{reason} ({n})" for reason, n in why) if why else ""
    return (f"| lake files rewritten: spliced (pages without an erased row copied undecoded) / whole | "
            f"{spliced} / {len(files) - spliced}; {copied / 1e6:,.1f} of the {written / 1e6:,.1f} MB written copied"
            f"{because} |")


def section(r: dict[str, Any], load: str) -> str:
    cert = r.get("certificate") or {}
    checks = (cert.get("verification") or {}).get("checks", {}).get("checked", [])
    intact = r["lake"]["rows"] == r["expected"]["rows"] and abs(r["lake"]["amount"] - r["expected"]["amount"]) < 0.01
    hosts = {k: v for k, v in r["peak"].items() if k != "emulator"}
    top = sorted(hosts.items(), key=lambda kv: -kv[1])[:4]
    lines = [
        f"## Erasure at real size, end to end (TPC-H SF{r['sf']:g} orders, {r['rows']:,} rows; "
        f"{r['subjects']} customers, {r['orders_erased']:,} orders)",
        "",
        f"`.venv/bin/python bench/erasure_e2e_bench.py --sf {r['sf']:g} --subjects {r['subjects']} "
        f"--objects {r['objects']}{' --after-compaction' if r.get('t_compact') is not None else ''} --update-docs`",
        "",
        machine("pyarrow", "duckdb", "moto") + f" {load}",
        "",
        "| step | result |",
        "|---|---|",
        f"| load: land → transformed ({r['objects']} JSONL objects, {r['jsonl_mb']:.0f} MB, 128 MiB chunks) | "
        f"{r['t_load']:.0f} s |",
        *([f"| compaction: transformed → one file per partition (the erasure waited for it) | "
           f"{r['t_compact']:.0f} s |"] if r.get("t_compact") is not None else []),
        f"| erasure: request → {r['state']} | {r['t_erase']:.0f} s |",
        f"| independent scan: {r['scan'].get('versions', 0):,} object versions, {r['scan'].get('items', 0):,} "
        f"table items, {r['scan'].get('parquet', 0):,} Parquet files ({r['scan'].get('rows', 0):,} rows, "
        f"{r['scan'].get('dictionaries', 0) + r['scan'].get('int_dictionaries', 0):,} dictionaries, "
        f"{r['scan'].get('statistics', 0):,} statistics), {r['scan'].get('text_bytes', 0) / 1e6:.0f} MB of text | "
        f"{len(r['scan_hits'])} value(s) of the erased rows found, {r['t_scan']:.0f} s |",
        f"| bloom filters probed for the erased ids (DuckDB) | {r['scan'].get('bloom_maybe', 0)} of "
        f"{r['scan'].get('bloom_probes', 0)} probes 'maybe' (filters built at 5 % false positives) |",
        f"| other rows intact: count, sum(amount) vs DuckDB over the source minus the erased | "
        f"{r['lake']['rows']:,} / {r['expected']['rows']:,}; {r['lake']['amount']:,.2f} / "
        f"{r['expected']['amount']:,.2f} → {'equal' if intact else 'DIFFERENT'} |",
        _spliced_row(cert),
        f"| peak RSS: emulator (moto, supervisor process) | {r['peak'].get('emulator', 0) / 2**20:,.0f} MB |",
        "| peak RSS: function hosts (top 4) | " + ", ".join(f"{k} {v / 2**20:,.0f} MB" for k, v in top) + " |",
    ]
    spent = r.get("timeline") or {}
    if spent.get("phases"):
        fns = spent["functions"]
        lines += ["", "Where the erasure's time goes (seconds from the request; phases from the run's record, handler "
                  "time from the function hosts' logs, two worker hosts):", "",
                  "| request → run | " + " | ".join(spent["phases"]) + " | total | run ticks | worker invocations |",
                  "|" + "---:|" * (len(spent["phases"]) + 4),
                  f"| {spent['to_first_phase']:.1f} | " + " | ".join(f"{v:.1f}" for v in spent["phases"].values())
                  + f" | {spent['total']:.1f} | {fns['erasure-run']['invocations']} "
                  f"({fns['erasure-run']['handler_s']:.1f} s) | {fns['erasure-worker']['invocations']} "
                  f"({fns['erasure-worker']['handler_s']:.1f} s) |"]
    if checks:
        lines += ["", "What the certificate says it checked (orders):", "",
                  "| copy | checked | left |", "|---|---|---:|"]
        lines += [f"| {c['copy']} | {c['checked']} | {c['left']} |" for c in checks if c["dataset"] == "orders"]
    if r["scan_hits"]:
        lines += ["", "Survivors found by the scan (first 10):", ""] + [f"- {h}" for h in r["scan_hits"][:10]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sf", type=float, default=1.0)
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--objects", type=int, default=8, help="land the orders as this many JSONL objects")
    parser.add_argument("--timeout", type=float, default=5400, help="seconds for the load, and for the erasure")
    parser.add_argument("--max-rss-gb", type=float, default=6.0, help="stop the platform past this RSS")
    parser.add_argument("--after-compaction", action="store_true",
                        help="file the erasure once every partition is compacted to one file (default: at once)")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    os.environ["ETL_LOCAL_DIR"] = tempfile.mkdtemp(prefix="etl-erasure-e2e-")
    load = f"(1-min load average at start {os.getloadavg()[0]:.1f})"
    result = run(args)
    Path(tempfile.gettempdir(), "etl-erasure-e2e-bench.json").write_text(json.dumps(result, indent=2, default=str))
    text = section(result, load)
    print(text)
    if args.update_docs:
        update_docs("erasure-e2e", text)
    if result["state"] != "COMPLETED" or result["scan_hits"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
