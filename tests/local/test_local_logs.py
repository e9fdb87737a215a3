"""`etl local logs --object ID` follows one object through every function's log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli import app


def record(ts: str, message: str, correlation: str) -> str:
    return json.dumps({"level": "INFO", "timestamp": ts, "message": message, "correlation_id": correlation})


@pytest.fixture
def local_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ETL_LOCAL_DIR", str(tmp_path))
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "etl-local-ingest.log").write_text("\n".join([
        record("2026-11-22 10:00:01,000", "object stored raw", "obj-a"),
        record("2026-11-22 10:00:02,000", "object stored raw", "obj-b"),
        '{"local": "invocation", "function": "etl-local-ingest", "records": 2}',
    ]) + "\n")
    (logs / "etl-local-transform.log").write_text("\n".join([
        "Traceback (most recent call last):", "{not json",
        record("2026-11-22 10:00:03,000", "chunk transformed", "obj-a"),
    ]) + "\n")
    return tmp_path


def test_object_filter_merges_every_function_in_time_order(local_dir: Path) -> None:
    out = CliRunner().invoke(app, ["local", "logs", "--object", "obj-a"])
    assert out.exit_code == 0, out.output
    messages = [json.loads(line)["message"] for line in out.output.splitlines()]
    assert messages == ["object stored raw", "chunk transformed"]


def test_unknown_object_says_where_ids_come_from(local_dir: Path) -> None:
    out = CliRunner().invoke(app, ["local", "logs", "--object", "nope"])
    assert out.exit_code == 1 and "etl status" in out.output


def test_plain_logs_still_tail_one_function(local_dir: Path) -> None:
    out = CliRunner().invoke(app, ["local", "logs", "etl-local-ingest", "-n", "1"])
    assert out.exit_code == 0 and '"local": "invocation"' in out.output
