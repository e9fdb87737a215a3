"""One local platform (`etl local up --detach`, its own state dir) for the console's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl.local.console import ConsoleInfo, info
from etl.local.platform import PlatformState, wait_ready

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _etl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etl.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=180, check=False)


@pytest.fixture(scope="package")  # down before other packages start theirs: one platform at a time
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PlatformState, ConsoleInfo]]:
    state_dir = tmp_path_factory.mktemp("etl-console")
    env = {**os.environ, "ETL_LOCAL_DIR": str(state_dir), "PYTHONPATH": str(ROOT)}
    env.pop("AWS_ENDPOINT_URL", None)
    old = os.environ.get("ETL_LOCAL_DIR")
    os.environ["ETL_LOCAL_DIR"] = str(state_dir)
    try:
        # four eyes on: the browser flow needs a second officer's approval, as a strict environment would
        started = _etl("local", "up", "--detach", "--port", "0", "--set", "erasure:erasureApproval=true", env=env)
        if started.returncode == 0:
            assert "compliance console:" in started.stdout and "local-officer" in started.stdout
        else:  # `etl local up` waits 120 s; on a busy machine the detached platform may just need longer
            assert "not ready after" in started.stderr, started.stdout + started.stderr
            wait_ready(timeout_s=600)
        state, site = PlatformState.load(), info(state_dir)
        assert state is not None and site is not None
        yield state, site
    finally:
        stopped = _etl("local", "down", env=env)  # also after a failed start: nothing left running
        assert stopped.returncode == 0, stopped.stderr
        if old is None:
            os.environ.pop("ETL_LOCAL_DIR", None)
        else:
            os.environ["ETL_LOCAL_DIR"] = old


