"""The local platform with the observability resources: the dashboard is provisioned, tracing is off."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from contracts import aws
from etl.local.moto_backend import MotoBackend
from etl.local.platform import ROOT
from etl.local.program import run_stack

PROBE = """
import json, sys
if sys.argv[1] == "host":
    from etl.local.functions import load_handler
    load_handler("services.ingest.handler.handler")
import aws_xray_sdk
import services.ingest.handler as h
print(json.dumps({"disabled": bool(h.tracer.disabled), "sdk": aws_xray_sdk.global_sdk_config.sdk_enabled()}))
"""


def probe(mode: str) -> dict[str, bool]:
    """Import the ingest handler in a fresh interpreter that looks like Lambda (LAMBDA_TASK_ROOT set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_TRACE")}
    env.update(LAMBDA_TASK_ROOT="/var/task", AWS_DEFAULT_REGION="us-east-1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_function_hosts_import_handlers_with_tracing_disabled() -> None:
    """Where powertools would think it runs in Lambda and trace, a function host still turns tracing off."""
    assert probe("plain") == {"disabled": False, "sdk": True}, "control: this environment would trace"
    assert probe("host") == {"disabled": True, "sdk": False}


@pytest.fixture
def moto_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for k, v in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    return moto_endpoint


def test_core_stack_with_its_dashboard_stands_up_in_moto(moto_env: str) -> None:
    run = run_stack("core-local", MotoBackend(), {}, {})
    (dash,) = [r for r in run.resources if r.type == "aws:cloudwatch/dashboard:Dashboard"]
    stored = aws.client("cloudwatch").get_dashboard(DashboardName="etl-local")
    assert stored["DashboardBody"] == dash.inputs["dashboardBody"]
    assert stored["DashboardArn"] == dash.state["dashboardArn"]
    assert run.outputs["dashboardName"] == "etl-local"
    assert "no data locally" in dash.effect
