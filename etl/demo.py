"""`etl demo`: start the local platform, land the sample data, show it flow, stop cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from contracts import aws, progress
from contracts.lineage import LINE_COLUMN, REASON_COLUMN
from etl import erasure_cli, loader, targets
from etl.local import platform

SAMPLES = platform.ROOT / "samples"
FINAL_STAGES = {"rejected", "failed", "transformed"}
ANALYST_SQL = (
    "SELECT country, count(*) AS customers FROM customers GROUP BY country ORDER BY customers DESC, country LIMIT 5",
    "SELECT order_year, order_month, count(*) AS orders, sum(amount) AS revenue FROM orders "
    "WHERE order_year >= '2023' GROUP BY ALL ORDER BY order_year, order_month LIMIT 12",
    "SELECT c.country, count(*) AS orders, sum(o.amount) AS revenue FROM orders o "
    "JOIN customers c USING (customer_id) GROUP BY c.country ORDER BY revenue DESC LIMIT 5",
)


def _observer(bus: str) -> str:
    """A demo queue subscribed to every platform event, so the demo can show what was announced."""
    sqs, ev = aws.client("sqs"), aws.client("events")
    url = sqs.create_queue(QueueName=f"demo-observer-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    from contracts.events import EVENT_TYPES

    ev.put_rule(Name="demo-observer", EventBusName=bus,
                EventPattern=json.dumps({"source": sorted({t.SOURCE for t in EVENT_TYPES.values()})}))
    ev.put_targets(Rule="demo-observer", EventBusName=bus, Targets=[{"Id": "demo", "Arn": arn}])
    return url


def _drain(url: str) -> list[dict[str, Any]]:
    sqs, out = aws.client("sqs"), []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out


def _demo_files() -> list[tuple[Path, str]]:
    """The shipped samples plus two files that must be rejected (and kept)."""
    files = []
    for dataset_dir in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
        for f in loader.files_under(dataset_dir):
            files.append((f, loader.landing_key(dataset_dir.name, dataset_dir, f)))
    scratch = Path(tempfile.mkdtemp(prefix="etl-demo-"))
    (scratch / "empty.csv").write_bytes(b"")
    (scratch / "mystery.csv").write_bytes(b"a,b\n1,2\n")
    files += [(scratch / "empty.csv", "customers/empty.csv"), (scratch / "mystery.csv", "unknown_feed/mystery.csv")]
    return files


def _show_quarantine(console: Console, bucket: str, limit: int = 8) -> None:
    """A few quarantined rows with their reasons (sample data only: reasons may quote values)."""
    import pyarrow.parquet as pq

    t = Table(title=f"quarantined rows (first {limit}), kept in s3://{bucket} with their reason")
    for col in ("dataset", "source line", "reason"):
        t.add_column(col)
    shown = 0
    for obj in aws.client("s3").list_objects_v2(Bucket=bucket).get("Contents", []):
        rows = pq.read_table(f"{bucket}/{obj['Key']}", filesystem=aws.s3_filesystem()).to_pylist()
        for row in rows[: limit - shown]:
            t.add_row(obj["Key"].split("/", 1)[0], str(row.get(LINE_COLUMN)), str(row.get(REASON_COLUMN)))
            shown += 1
    console.print(t)


def _compaction_live(console: Console, landing: str, observer: str, files: int = 18, timeout_s: float = 120) -> None:
    """Many small objects for one month: the partition crosses its threshold and is compacted by itself."""
    s3 = aws.client("s3")
    with console.status(f"landing {files} small orders files for June 2024…"):
        for f in range(files):
            lines = [json.dumps({"order_id": 9_000_000 + f * 100 + i, "customer_id": 1 + (f * 7 + i) % 200,
                                 "amount": f"{10 + i}.50", "status": "paid", "order_date": f"2024-06-{1 + i % 28:02d}"})
                     for i in range(25)]
            s3.put_object(Bucket=landing, Key=f"orders/demo-small/part-{f:03d}.jsonl", Body="\n".join(lines) + "\n")
    deadline = time.monotonic() + timeout_s
    with console.status("waiting for the compaction service to notice and rewrite the partition…"):
        while time.monotonic() < deadline:
            done = [e for e in _drain(observer) if e["detail-type"] == "PartitionCompacted"
                    and e["detail"]["partition"] == {"order_year": "2024", "order_month": "06"}]
            if done:
                d = done[0]["detail"]
                console.print(f"[green]PartitionCompacted[/] orders 2024/06: {d['files_before']} files → "
                              f"{d['files_after']} ({d['bytes_before']:,} → {d['bytes_after']:,} bytes, "
                              f"{d['rows']:,} rows, generation {d['generation']}, {d['duration_ms']} ms)")
                return
            time.sleep(1)
    console.print("[yellow]no compaction within the timeout[/] — see `etl local logs etl-local-compact`")


def _console_url(console: Console) -> None:
    """The demo opens with the compliance console's URL: follow step 6 in a browser while it runs."""
    from etl.local import console as console_site

    site = console_site.info()
    if site:
        console.print(f"[bold]compliance console:[/] {site.url}  (sign in as {site.username} / {site.password}; "
                      "the erasure in step 6 shows up there live)")


def run(console: Console, timeout_s: float = 60) -> None:
    started_here = False
    try:
        targets.local_state()
        console.print("[dim]reusing the local platform that is already running[/]")
    except targets.TargetError:
        console.rule("1. etl local up --detach")
        proc = subprocess.run([sys.executable, "-m", "etl.cli", "local", "up", "--detach", "--port", "0"],
                              check=False)
        if proc.returncode != 0:
            raise SystemExit(proc.returncode) from None
        started_here = True
    try:
        _console_url(console)
        target = targets.resolve("local")
        observer = _observer(target.out("core", "busName"))
        console.rule("2. etl load samples → landing bucket")
        files = _demo_files()
        list(loader.upload(files, target.out("core", "landingBucket")))
        console.rule("3. watch the objects flow")
        table_name = target.out("core", "stateTable")
        deadline = time.monotonic() + timeout_s
        with console.status("waiting for every object to be ingested and transformed…"):
            while time.monotonic() < deadline:
                rows = progress.list_objects(aws.client("dynamodb"), table_name)
                if len(rows) >= len(files) and all(r.get("stage") in FINAL_STAGES for r in rows):
                    break
                time.sleep(0.5)
        subprocess.run([sys.executable, "-m", "etl.cli", "status"], check=False)
        events = _drain(observer)
        t = Table(title="events announced on the platform bus")
        for col in ("detail-type", "dataset", "source key", "detail"):
            t.add_column(col)
        files_added: dict[str, int] = {}
        for e in events:
            d = e["detail"]
            if e["detail-type"] == "PartitionFilesAdded":  # one per partition: summarised below
                files_added[d["dataset"]] = files_added.get(d["dataset"], 0) + 1
                continue
            counts = f"{d['rows_good']} rows, {d['rows_quarantined']} quarantined" if "rows_good" in d else ""
            t.add_row(e["detail-type"], str(d.get("dataset") or "-"), d.get("source_key", d.get("raw_key", "")),
                      d.get("reason") or counts or d.get("raw_key", ""))
        for dataset, n in sorted(files_added.items()):
            t.add_row("PartitionFilesAdded", dataset, "", f"{n} partition commits")
        console.print(t)
        _show_quarantine(console, target.out("core", "quarantineBucket"))
        raw = aws.client("s3").list_objects_v2(Bucket=target.out("core", "rawBucket")).get("KeyCount", 0)
        console.print(f"raw bucket holds [bold]{raw}[/] untouched copies (expire after the raw TTL)")
        console.rule("4. analysts: etl query (DuckDB over the Glue catalog's current partitions)")
        for sql in ANALYST_SQL:
            console.print(f"[bold]$ etl query[/] \"{sql}\"")
            subprocess.run([sys.executable, "-m", "etl.cli", "query", sql], check=False)
        console.rule("5. compaction: small files in, few large files out, swapped in atomically")
        _compaction_live(console, target.out("core", "landingBucket"), observer)
        console.rule("6. compliance: erase sample customer 42 (request --now, status --watch, certificate)")
        erasure_cli.demo("42")
    finally:
        if started_here:
            console.rule("7. etl local down")
            subprocess.run([sys.executable, "-m", "etl.cli", "local", "down"], check=False)


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "140")
    run(Console())
