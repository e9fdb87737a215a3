"""`etl local up/down` never hang and never leave processes: taken ports, emulators that die, crashed supervisors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli import app
from etl.local import emulator, platform

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ETL_LOCAL_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_taken_port_is_a_clear_error_and_exit_code_not_a_hang(state_dir: Path, taken_port: int) -> None:
    for detach in ([], ["--detach"]):
        result = CliRunner().invoke(app, ["local", "up", "--port", str(taken_port), *detach])
        assert result.exit_code == 1
        assert f"port {taken_port}" in result.output and "already in use" in result.output
        assert "--port 0" in result.output, "the error says what to do next"
    assert not platform.state_file().exists()


def test_the_emulator_itself_refuses_a_taken_port(taken_port: int) -> None:
    with pytest.raises(emulator.EmulatorError, match="already in use"):
        emulator.Emulator("127.0.0.1", taken_port).start(timeout_s=5)


def test_a_supervisor_that_exits_while_starting_fails_at_once(state_dir: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "print('ImportError: no module named moto'); raise SystemExit(3)"],
                            stdout=open(state_dir / "platform.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    with pytest.raises(RuntimeError, match=r"exited with 3 while starting: ImportError"):
        platform.wait_ready(timeout_s=60, proc=proc)


def spawn_sleepers(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(SLEEPER) for _ in range(n)]


def test_down_stops_every_recorded_process_after_the_supervisor_crashed(state_dir: Path) -> None:
    supervisor, *hosts = spawn_sleepers(3)
    st = platform.PlatformState(pid=supervisor.pid, endpoint="http://127.0.0.1:1", status="ready")
    st.started[str(supervisor.pid)] = platform.process_start(supervisor.pid)
    for i, proc in enumerate(hosts):
        st.record(f"etl-local-transform#{i}", proc.pid)
    supervisor.kill()  # the supervisor (and its emulator) crash: the hosts live on
    supervisor.wait()
    try:
        result = CliRunner().invoke(app, ["local", "down"])
        assert result.exit_code == 0, result.output
        assert "stopped 2 process(es)" in result.output
        for proc in hosts:
            assert proc.wait(timeout=30) is not None
        assert not platform.state_file().exists()
    finally:
        for proc in hosts:
            proc.kill()


def test_down_never_kills_a_process_that_reused_a_recorded_pid(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (stranger,) = spawn_sleepers(1)
    signalled: list[tuple[int, int]] = []
    real_kill = os.kill

    def kill(pid: int, sig: int) -> None:
        signalled.append((pid, sig))
        real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    try:
        st = platform.PlatformState(pid=999_999_999, endpoint="", status="ready")
        st.hosts["etl-local-ingest#0"] = stranger.pid
        st.started[str(stranger.pid)] = (platform.process_start(stranger.pid) or 0) + 12345  # another process
        st.save()
        result = CliRunner().invoke(app, ["local", "down"])  # in this process: every signal it sends is recorded
        assert result.exit_code == 0 and "not running" in result.output
        assert [s for pid, s in signalled if pid == stranger.pid and s != 0] == [], "no signal to a reused pid"
        assert stranger.poll() is None, "a process that only shares a recorded pid is left alone"
    finally:
        stranger.kill()


def test_up_clears_what_a_crashed_platform_left_behind(state_dir: Path, taken_port: int) -> None:
    (orphan,) = spawn_sleepers(1)
    st = platform.PlatformState(pid=999_999_999, endpoint="", status="ready")
    st.record("etl-local-compact#0", orphan.pid)
    try:
        result = CliRunner().invoke(app, ["local", "up", "--port", str(taken_port)])  # stops at the port check
        assert "stopped 1 process(es) left by a platform that crashed" in result.output
        assert orphan.wait(timeout=30) is not None
    finally:
        orphan.kill()


def test_each_host_process_gets_its_own_tmp_like_a_lambda_sandbox(state_dir: Path) -> None:
    """compact wipes its work folder under /tmp at start: two hosts of one function must not share it."""
    program = {"WORK_DIR": "/tmp", "CACHE": "/tmp/cache", "OTHER": "/tmpfoo", "PLAIN": "v"}
    first = platform.sandbox_environment(program, "etl-local-compact#0")
    second = platform.sandbox_environment(program, "etl-local-compact#1")
    assert first["WORK_DIR"] == first["TMPDIR"] != second["TMPDIR"] == second["WORK_DIR"]
    assert first["CACHE"] == first["TMPDIR"] + "/cache" and Path(first["TMPDIR"]).is_dir()
    assert first["OTHER"] == "/tmpfoo" and first["PLAIN"] == "v"
    assert str(state_dir) in first["TMPDIR"]


def test_hosts_per_function_queue_slots_and_a_schedule_host(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.local.functions import LOCAL_CONCURRENCY_CAP

    sup = platform.Supervisor(0)
    spawned: list[tuple[str, list, list]] = []
    monkeypatch.setattr(sup, "spawn", lambda state, host, spec, slot: spawned.append(
        (host, spec["mappings"], spec["schedules"])))
    mapping = {"queue_arn": "a", "queue_url": "u", "batch_size": 10, "max_concurrency": 10,
               "report_batch_item_failures": True}
    schedule = {"rule": "r", "expression": "rate(1 minute)"}
    spec = {"function": {"name": "etl-local-compact"}, "mappings": [mapping], "schedules": [schedule]}
    st = platform.PlatformState(pid=1, endpoint="", status="starting")
    sup.spawn_function(st, spec, first=True)
    sup.spawn_function(st, spec, first=False)
    hosts = {h: (bool(m), bool(s)) for h, m, s in spawned}
    assert hosts["etl-local-compact#0"] == (True, False), "queue hosts never fire schedules"
    assert hosts["etl-local-compact#schedule"] == (False, True), "schedules fire in a host of their own"
    assert len([h for h in hosts if h[-1].isdigit()]) == LOCAL_CONCURRENCY_CAP
