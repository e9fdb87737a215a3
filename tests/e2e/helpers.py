"""What several e2e modules do on the platform: the erasure API, landing objects, counting rows, `etl compact`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from etl.local import http_api
from etl.query import LocalEngine
from tests.e2e.conftest import ROOT, Platform
from tests.e2e.lake import s3fs


def api(p: Platform, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    url = http_api.local_url("etl-local-erasure-api", Path(os.environ["ETL_LOCAL_DIR"])) + path
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        text, status = exc.read(), exc.code
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text.decode()


def wait_state(p: Platform, rid: str, states: set[str], timeout: float = 200) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, r = api(p, "GET", f"/erasure-requests/{rid}")
        if r["state"] in states:
            return r
        time.sleep(0.5)
    raise AssertionError(f"{rid} still {r['state']} after {timeout}s: {r}")


def land(p: Platform, objects: dict[str, tuple[str, bytes]]) -> dict[str, str]:
    """Land every object at once, then wait until each is transformed; object ids by name."""
    for key, body in objects.values():
        p.client("s3").put_object(Bucket=p.out("landingBucket"), Key=key, Body=body)
    oids = {}
    for name, (key, _) in objects.items():
        stored = p.wait_for(lambda _, k=key: p.events_for("RawObjectStored", source_key=k), timeout=60)
        oids[name] = stored[0]["detail"]["object_id"]
    for oid in oids.values():
        p.wait_for(lambda _, o=oid: p.events_for("ObjectTransformed", object_id=o), timeout=90)
    return oids


def duckdb_count(p: Platform, table: str, ids: list[int]) -> int:
    engine = LocalEngine(p.out("glueDatabase"), glue=p.client("glue"), filesystem=s3fs(p.state.endpoint))
    sql = f"SELECT count(*) AS n FROM {table} WHERE customer_id IN ({', '.join(map(str, ids))})"
    return int(engine.query(sql).table.column("n")[0].as_py())


def queue_drained(p: Platform, timeout: float = 30) -> None:
    """Wait until the compaction queue has nothing waiting or in flight (commands were handled)."""
    p.wait_drained(p.queue_of("etl-local-compact"), timeout=timeout)


def cli(p: Platform, *args: str) -> str:
    """`etl compact ...` (etl.compact_cli) against the platform; its output, or the assertion says why it failed."""
    done = subprocess.run([sys.executable, "-m", "etl.compact_cli", *args, "--env", "local"], env=p.cli_env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
