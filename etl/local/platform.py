"""The local platform supervisor: moto server + every stack of the `local` env + function hosts.

`etl local up` runs `serve()` (in the foreground, or detached in its own session); it writes a state
file that `etl local status/down`, `etl load` and `etl status` read. Nothing is exported into the
caller's environment: clients point the standard AWS_ENDPOINT_URL at the printed endpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contracts import aws, naming
from etl.local import accounting, http_api
from etl.local import console as console_site
from etl.local.emulator import Emulator
from etl.local.functions import FunctionSpec, MappingSpec, ScheduleSpec, rate_seconds, slots, stop_processes
from etl.local.paths import ROOT, state_dir
from etl.local.program import Registered, run_stack

ENV = "local"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
CONFIG_ENV = "ETL_LOCAL_CONFIG"  # JSON {stack: {key: value}} laid over Pulumi.<stack>.yaml (`etl local up --set`)


_SAVING = threading.Lock()


def state_file() -> Path:
    return state_dir() / "state.json"


@dataclass
class StackState:
    outputs: dict[str, Any]
    resources: list[dict[str, Any]]


@dataclass
class PlatformState:
    pid: int
    endpoint: str
    status: str  # starting | ready | failed
    stacks: dict[str, StackState] = field(default_factory=dict)
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, int] = field(default_factory=dict)  # host name (function#slot, http-api:…) -> pid
    started: dict[str, int] = field(default_factory=dict)  # pid -> its start time (/proc), to never kill a reused pid
    error: str | None = None

    def record(self, name: str, pid: int) -> None:
        """Remember a process this platform started, at once: `etl local down` stops it even after a crash."""
        self.hosts[name] = pid
        self.started[str(pid)] = process_start(pid) or 0
        self.save()

    def processes(self) -> list[int]:
        """The supervisor and every host it recorded that is still the same process (not a reused pid)."""
        pids = [self.pid, *self.hosts.values()]
        return [p for p in dict.fromkeys(pids) if pid_alive(p) and same_process(p, self.started.get(str(p)))]

    def save(self) -> None:
        path = state_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        with _SAVING:  # the host watchers record restarted pids from their own threads
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(self), indent=2, default=str))
            tmp.replace(path)

    @classmethod
    def load(cls) -> PlatformState | None:
        path = state_file()
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["stacks"] = {k: StackState(**v) for k, v in data.get("stacks", {}).items()}
        return cls(**data)

    def client_env(self) -> dict[str, str]:
        """What a client needs to talk to the emulator: the endpoint and dummy credentials."""
        return {"AWS_ENDPOINT_URL": self.endpoint, **CREDENTIALS}

    def output(self, component: str, key: str) -> Any:
        return self.stacks[naming.stack_name(component, ENV)].outputs[key]


def stack_config(stack: str) -> dict[str, Any]:
    """The `config:` of Pulumi.<stack>.yaml if present — the same file `pulumi up` would read — plus overrides."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    config = dict((yaml.safe_load(path.read_text()) or {}).get("config") or {}) if path.exists() else {}
    overrides = json.loads(os.environ.get(CONFIG_ENV) or "{}")
    return {**config, **overrides.get(stack, {})}


def config_overrides(settings: list[str]) -> dict[str, dict[str, str]]:
    """`component:key=value` (e.g. `transform:chunkMb=16`) → {stack: {"etl:key": value}} for the local env."""
    out: dict[str, dict[str, str]] = {}
    for item in settings:
        target, eq, value = item.partition("=")
        component, colon, key = target.partition(":")
        if not (eq and colon and key) or component not in naming.COMPONENTS:
            raise ValueError(f"{item!r}: expected component:key=value with component one of "
                             f"{', '.join(naming.COMPONENTS)} (e.g. transform:chunkBytes=1048576)")
        full_key = key if ":" in key else f"{naming.PROJECT}:{key}"
        out.setdefault(naming.stack_name(component, ENV), {})[full_key] = value
    return out


def functions_of(resources: list[Registered]) -> dict[str, dict[str, Any]]:
    """Function specs with their SQS mappings, from what the program registered."""
    by_arn: dict[str, dict[str, Any]] = {}
    for r in resources:
        if r.type == "aws:lambda/function:Function":
            spec = FunctionSpec(
                name=r.inputs["name"],
                handler=r.inputs["handler"],
                timeout_s=int(r.inputs.get("timeout") or 3),
                memory_mb=int(r.inputs.get("memorySize") or 128),
                environment={k: str(v) for k, v in (r.inputs.get("environment") or {}).get("variables", {}).items()},
            )
            by_arn[r.state["arn"]] = {"function": asdict(spec), "mappings": [], "schedules": []}
    sqs = aws.client("sqs")
    for r in resources:
        if r.type == "aws:lambda/eventSourceMapping:EventSourceMapping":
            fn = by_arn.get(r.inputs["functionName"])
            if fn is None:
                raise LookupError(f"event source mapping {r.name} targets unknown function {r.inputs['functionName']}")
            queue_arn = r.inputs["eventSourceArn"]
            url = sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
            mapping = MappingSpec(
                queue_arn=queue_arn,
                queue_url=url,
                batch_size=int(r.inputs.get("batchSize") or 10),
                max_concurrency=int((r.inputs.get("scalingConfig") or {}).get("maximumConcurrency") or 2),
                report_batch_item_failures="ReportBatchItemFailures" in (r.inputs.get("functionResponseTypes") or []),
                batching_window_s=int(r.inputs.get("maximumBatchingWindowInSeconds") or 0),
            )
            fn["mappings"].append(asdict(mapping))
    rules = {r.inputs["name"]: r for r in resources if r.type == "aws:cloudwatch/eventRule:EventRule"}
    for r in resources:
        if r.type == "aws:cloudwatch/eventTarget:EventTarget" and r.inputs["arn"] in by_arn:
            rule = rules.get(r.inputs["rule"])
            if rule is None or not rule.inputs.get("scheduleExpression"):
                raise LookupError(f"target {r.name}: only schedules may target a function directly")
            expression = rule.inputs["scheduleExpression"]
            rate_seconds(expression)  # a schedule the local timer cannot fire fails now, by name
            by_arn[r.inputs["arn"]]["schedules"].append(asdict(ScheduleSpec(rule.state["arn"], expression)))
    return {spec["function"]["name"]: spec for spec in by_arn.values()}


def sandbox_environment(environment: dict[str, str], host: str) -> dict[str, str]:
    """The function's variables with Lambda's private /tmp mapped to a fresh directory of this host process.

    On Lambda every sandbox has its own /tmp, and handlers rely on it (compact wipes its work folder
    under /tmp at start); host processes of one function must not share the machine's /tmp.
    """
    tmp = state_dir() / "sandboxes" / host.replace("/", "_") / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    mapped = {k: str(tmp) + v[4:] if v == "/tmp" or v.startswith("/tmp/") else v for k, v in environment.items()}
    return {**mapped, "TMPDIR": str(tmp)}


class Supervisor:
    def __init__(self, port: int) -> None:
        self.port = port
        self.server: Any = None
        self.children: dict[str, subprocess.Popen] = {}  # host name (function#slot) -> process
        self.specs: dict[str, tuple[dict[str, Any], int]] = {}  # host name -> (function spec, slot)
        self.stop = threading.Event()

    def start_emulator(self) -> str:
        """moto server (with the scaled S3 data plane) on loopback; EmulatorError says why it cannot start."""
        request_log = os.environ.get(accounting.REQUEST_LOG_ENV)
        if request_log:
            self.server = accounting.accounted_server(Path(request_log), "127.0.0.1", self.port)
        else:
            self.server = Emulator("127.0.0.1", self.port)
        endpoint = self.server.start()
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, **CREDENTIALS})
        return endpoint

    def provision(self, state: PlatformState) -> None:
        from etl.local.moto_backend import MotoBackend
        from infra.program import BUILDERS

        backend = MotoBackend()
        outputs: dict[str, dict[str, Any]] = {}
        for component in BUILDERS:  # core first: the services read its outputs
            stack = naming.stack_name(component, ENV)
            run = run_stack(stack, backend, stack_config(stack), outputs)
            outputs[stack] = run.outputs
            state.stacks[stack] = StackState(
                outputs=run.outputs,
                resources=[{"type": r.type, "name": r.name, "id": r.id, "effect": r.effect} for r in run.resources],
            )
            state.functions.update(functions_of(run.resources))

    def spawn_function(self, state: PlatformState, spec: dict[str, Any], first: bool) -> None:
        """One host process per concurrency slot of the queue mappings, each running one invocation at a time,
        like a sandbox; scheduled invocations get a host of their own (on Lambda they take their own sandbox).

        `first`: slot 0 and the scheduled host (before "ready"); else the other slots (after "ready", so
        that a start on a busy machine does not wait for every process's imports).
        """
        name = spec["function"]["name"]
        polling = {**spec, "schedules": []}
        if first:
            if spec["mappings"]:
                self.spawn(state, f"{name}#0", polling, 0)
            if spec.get("schedules"):
                self.spawn(state, f"{name}#schedule", {**spec, "mappings": []}, 0)
            return
        for slot in range(1, slots(MappingSpec(**m) for m in spec["mappings"]) if spec["mappings"] else 1):
            self.spawn(state, f"{name}#{slot}", polling, slot)

    def spawn(self, state: PlatformState, host: str, spec: dict[str, Any], slot: int) -> None:
        name = spec["function"]["name"]
        logs = state_dir() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **sandbox_environment(spec["function"]["environment"], host), "PYTHONPATH": str(ROOT),
               **accounting.caller_env(name)}
        with open(logs / f"{name}.log", "ab") as out:  # every slot of a function appends to its one log
            self.children[host] = subprocess.Popen(
                [sys.executable, "-m", "etl.local.functions", json.dumps(spec), str(slot)],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            )
        self.specs[host] = (spec, slot)
        state.record(host, self.children[host].pid)

    def watch(self, state: PlatformState) -> None:
        """Restart a function host that died (its log says why) until asked to stop."""
        while not self.stop.wait(1.0):
            for host, proc in list(self.children.items()):
                if proc.poll() is not None:
                    print(f"function host {host} exited with {proc.returncode}; restarting", flush=True)
                    spec, slot = self.specs[host]
                    self.spawn(state, host, spec, slot)

    def shutdown(self) -> None:
        stop_processes(self.children.values())
        if self.server is not None:
            self.server.stop()


def serve(port: int) -> None:
    """Run the platform until SIGTERM/SIGINT; the state file says when it is ready."""
    sup = Supervisor(port)
    signal.signal(signal.SIGTERM, lambda *_: sup.stop.set())
    signal.signal(signal.SIGINT, lambda *_: sup.stop.set())
    state = PlatformState(pid=os.getpid(), endpoint="", status="starting")
    state.started[str(state.pid)] = process_start(state.pid) or 0
    apis: http_api.ApiHosts | None = None
    site: console_site.ConsoleSite | None = None
    try:
        state.save()
        state.endpoint = sup.start_emulator()
        state.save()
        sup.provision(state)
        for spec in state.functions.values():
            sup.spawn_function(state, spec, first=True)
        apis = http_api.start(state.functions, state_dir(), on_spawn=state.record)
        erasure = state.stacks.get(naming.stack_name("erasure", ENV))
        site = console_site.start(erasure.outputs if erasure else {}, state.endpoint, state_dir())
        state.status = "ready"
        state.save()
        print(f"local platform ready at {state.endpoint}", flush=True)
        if site is not None:
            print(f"compliance console at {site.url} (user {site.info.username})", flush=True)
        for spec in state.functions.values():
            sup.spawn_function(state, spec, first=False)
        sup.watch(state)
    except Exception as exc:
        state.status, state.error = "failed", f"{type(exc).__name__}: {exc}"
        state.save()
        raise
    finally:
        if site is not None:
            site.stop()
        if apis is not None:
            apis.stop()
        sup.shutdown()
        if state.status != "failed":
            state_file().unlink(missing_ok=True)


def wait_ready(timeout_s: float = 540, proc: subprocess.Popen | None = None) -> PlatformState:
    """Block until a (detached) platform reports ready; raise with its error if it failed or exited."""
    deadline = time.monotonic() + timeout_s
    log = state_dir() / "platform.log"
    while time.monotonic() < deadline:
        st = PlatformState.load()
        if st and st.status == "ready":
            return st
        if st and st.status == "failed":
            raise RuntimeError(f"local platform failed to start: {st.error} (see {log})")
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise RuntimeError(f"local platform exited with {proc.returncode} while starting: "
                               f"{tail[0] if tail else 'no output'} (see {log})")
        time.sleep(0.2)
    raise TimeoutError(f"local platform not ready after {timeout_s:.0f}s (see {log})")


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (exited, waiting for its parent to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def same_process(pid: int, started: int | None) -> bool:
    """True unless /proc proves `pid` now belongs to another process than the one recorded."""
    if not started:
        return True
    now = process_start(pid)
    return now is None or now == started


def stop_recorded(st: PlatformState, timeout_s: float = 20) -> list[int]:
    """Stop the supervisor (it stops its hosts), then every recorded host still running; return the pids hit.

    The hosts are recorded in the state file as they start, so this works after the supervisor
    crashed too. SIGTERM first; SIGKILL whatever is left after `timeout_s`.
    """
    pids = st.processes()
    if st.pid in pids:
        _terminate([st.pid], timeout_s)
        st = PlatformState.load() or st  # a crashed supervisor leaves its latest record behind
    left = [p for p in st.processes() if p != st.pid]
    _terminate(left, timeout_s)
    return list(dict.fromkeys([*pids, *left]))


def _terminate(pids: list[int], timeout_s: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    killed = [pid for pid in pids if pid_alive(pid)]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10  # SIGKILL is delivered asynchronously: return once they are really gone
    while time.monotonic() < deadline and any(pid_alive(p) for p in killed):
        time.sleep(0.05)


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 4566)
