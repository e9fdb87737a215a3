"""Lambda layers: platform selection, trimming, reproducibility, limits — and artifacts that run alone.

No test reaches the network: pip installs from wheels made here (`--no-index`), and the host-architecture
artifacts are made from this environment's installed distributions, trimmed by the same rules. Each service's
handlers then run on sample events in an interpreter that sees only its artifacts, against moto server on
loopback, with the handler and environment the Pulumi program declares for the function.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pulumi
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from packaging.utils import canonicalize_name
from pyarrow import fs as pafs

from contracts import aws, layout, naming
from contracts import events as contract_events
from contracts.commits import PartitionCommitter, PartitionRef
from contracts.datasets import load_datasets
from etl import build
from etl.compact_cli import compact_message
from etl.local.functions import scheduled_event
from etl.local.http_api import Route, proxy_event
from etl.local.program import run_stack
from etl.local.recording import RecordingBackend
from infra import artifacts
from infra.packaging import build_archive
from services.transform.core import transform
from services.transform.parquet import file_name, parquet_bytes
from services.transform.partition import partition_path
from tests.fakes.catalog import create_dataset_table


# -- platform and pinning -------------------------------------------------------------------------------------
def test_platform_tags_cover_every_manylinux_lambda_can_load_newest_first() -> None:
    tags = build.platform_tags("arm64")
    assert tags[0] == "manylinux_2_34_aarch64" and "manylinux_2_28_aarch64" in tags
    assert tags[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert all(t.endswith("_x86_64") for t in build.platform_tags("x86_64"))
    with pytest.raises(build.BuildError, match="'ppc64le' is not one of arm64, x86_64"):
        build.platform_tags("ppc64le")


def test_pip_command_targets_cpython_312_binaries_only(tmp_path: Path) -> None:
    cmd = build.pip_command(["pydantic"], tmp_path / "t", "x86_64", tmp_path / "c.txt")
    joined = " ".join(cmd)
    assert "--only-binary=:all: --python-version 3.12 --implementation cp" in joined
    assert f"--target {tmp_path / 't'}" in joined and f"--constraint {tmp_path / 'c.txt'}" in joined
    assert cmd.count("--platform") == len(build.platform_tags("x86_64")) and cmd[-1] == "pydantic"


def test_constraints_pin_the_whole_installed_closure_to_the_tested_versions() -> None:
    from importlib.metadata import version

    pins = build.constraints(["pydantic"])
    assert f"pydantic=={version('pydantic')}" in pins
    assert f"pydantic-core=={version('pydantic-core')}" in pins
    assert any(p.startswith("typing-extensions==") for p in pins)
    assert not any(p.startswith("email-validator") for p in pins)  # an extra, not a requirement
    with pytest.raises(build.BuildError, match="not installed"):
        build.constraints(["surely-not-installed-pkg"])


def test_every_service_has_requirements_and_pyarrow_only_where_needed() -> None:
    assert "pyarrow" not in build.requirements("ingest")
    assert all("pyarrow" in build.requirements(s) for s in ("transform", "compact", "erasure"))
    assert "ingest" in build.buildable_services()
    with pytest.raises(build.BuildError, match="services: ingest"):
        build.requirements("billing")


# -- a layer from local wheels through the real pip step --------------------------------------------------------
def make_wheel(where: Path, name: str, files: dict[str, bytes], requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel: enough for pip to install it offline."""
    dist = f"{name}-1.0.dist-info"
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: 1.0\n{}".format(
        name, "".join(f"Requires-Dist: {r}\n" for r in requires))
    wheel_meta = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    contents = {**files, f"{dist}/METADATA": meta.encode(), f"{dist}/WHEEL": wheel_meta.encode()}
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for path, data in contents.items()
    ) + f"{dist}/RECORD,,\n"
    path = where / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for arc, data in [*contents.items(), (f"{dist}/RECORD", record.encode())]:
            zf.writestr(arc, data)
    return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("wheels")
    lib = b"\x7fELF fake shared library" * 100
    make_wheel(where, "fakedep", {
        "fakedep/__init__.py": b"from fakedep.core import answer\n",
        "fakedep/core.py": b"def answer():\n    return 42\n",
        "fakedep/__init__.pyi": b"def answer() -> int: ...\n",
        "fakedep/tests/test_core.py": b"assert True\n",
        "fakedep/include/fake.h": b"int answer(void);\n",
        "fakedep/libfake.so": lib, "fakedep/libfake.so.1": lib, "fakedep/libfake.so.1.2.3": lib,
        "fakedep/libfake.a": b"static archive",
    }, requires=("boto3",))
    make_wheel(where, "boto3", {"boto3/__init__.py": b"# the runtime has its own\n"})
    return where


def offline_installer(wheels: Path) -> build.Installer:
    return build.pip_installer("arm64", pin=False, pip_args=["--no-index", "--find-links", str(wheels)])


def test_layer_is_reproducible_trimmed_and_importable(tmp_path: Path, wheels: Path) -> None:
    a = build.build_layer("fake", "arm64", tmp_path / "a", installer=offline_installer(wheels), reqs=["fakedep"])
    b = build.build_layer("fake", "arm64", tmp_path / "b", installer=offline_installer(wheels), reqs=["fakedep"])
    assert a.path.name == "fake-layer-arm64.zip"
    assert a.sha256_b64 == b.sha256_b64 and a.path.read_bytes() == b.path.read_bytes()
    assert a.sha256_b64 == base64.b64encode(hashlib.sha256(a.path.read_bytes()).digest()).decode()

    with zipfile.ZipFile(a.path) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) and all(n.startswith("python/") for n in names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {(i.external_attr >> 16) & 0o777 for i in infos} <= {0o644, 0o755}
    assert "python/fakedep/core.py" in names and "python/fakedep/libfake.so.1" in names
    for gone in ("fakedep/__init__.pyi", "fakedep/tests/test_core.py", "fakedep/include/fake.h", "fakedep/libfake.a",
                 "fakedep/libfake.so", "fakedep/libfake.so.1.2.3", "boto3/__init__.py"):
        assert f"python/{gone}" not in names, gone
    assert not any("__pycache__" in n for n in names)
    assert a.trimmed_bytes > 0 and a.distributions == ("fakedep-1.0",)
    assert a.unzipped_bytes == sum(i.file_size for i in infos) and a.files == len(infos)

    with zipfile.ZipFile(a.path) as zf:
        zf.extractall(tmp_path / "opt")
    out = clean_python(["import fakedep; print(fakedep.answer())"], [tmp_path / "opt" / "python"])
    assert out.stdout.strip() == "42", out.stderr


def test_a_pip_failure_is_reported_with_pips_reason(tmp_path: Path, wheels: Path) -> None:
    with pytest.raises(build.BuildError, match="pip failed") as info:
        build.build_layer("fake", "arm64", tmp_path, installer=offline_installer(wheels), reqs=["not-in-wheels"])
    assert "not-in-wheels" in str(info.value)
    assert not (tmp_path / "fake-layer-arm64.zip").exists()


# -- limits --------------------------------------------------------------------------------------------------
def test_limits_name_the_service_and_the_size(tmp_path: Path) -> None:
    code = build_archive("ingest", tmp_path)
    small = build.LayerArtifact("ingest", "arm64", tmp_path / "l.zip", "x", 3 * build.MB, 10 * build.MB, 5, 0, ())
    sizes = build.check_limits("ingest", code.path, small)
    assert sizes.problems == () and not sizes.needs_s3
    assert sizes.function_unzipped == build.archive_unzipped_bytes(code.path) > sizes.function_zipped
    big = build.LayerArtifact("ingest", "arm64", tmp_path / "l.zip", "x", 60 * build.MB, 250 * build.MB, 5, 0, ())
    sizes = build.check_limits("ingest", code.path, big)
    assert sizes.needs_s3
    total_mb = (sizes.function_unzipped + 250 * build.MB) / build.MB  # the function's code grows with contracts
    assert len(sizes.problems) == 1
    assert f"ingest: function + layer unzipped is {total_mb:.1f} MB, over" in sizes.problems[0]


# -- host-architecture artifacts run alone ------------------------------------------------------------------------
SERVICES = ("ingest", "transform", "compact", "erasure")
ACCOUNT = "123456789012"
#: what core exports, as a StackReference gives it to the service stacks: the resources `lake` creates in moto
CORE_OUTPUTS = {
    **{f"{p}Bucket": f"art-{p}" for p in ("landing", "raw", "lake", "quarantine", "artifacts")},
    **{f"{p}BucketArn": f"arn:aws:s3:::art-{p}" for p in ("landing", "raw", "lake", "quarantine")},
    "busName": "art-bus", "busArn": f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/art-bus",
    "archiveName": "art-archive", "glueDatabase": "art_db",
    "stateTable": "art-state", "stateTableArn": f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/art-state",
    "idempotencyTable": "art-idem", "idempotencyTableArn": f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/art-idem",
    "alertsTopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:art-alerts", "athenaWorkgroup": "art",
}
PENDING_ID = "er-00000000000000-pending000"  # in an HTTP event built before the request id is known
#: the one setting changed from the dev defaults: replaced lake generations are purged at once, not after 30 min
STACK_CONFIG = {"erasure": {"etl:erasurePurgeGraceSeconds": 0}}


def clean_python(lines: list[str], paths: list[Path], env: dict[str, str] | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -I -S`: no site-packages, no PYTHON* variables; only `paths` (in order) before the stdlib."""
    script = f"import sys; sys.path[:0] = {[str(p) for p in paths]!r}\n" + "\n".join(lines)
    return subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True,
                          timeout=timeout, env=env if env is not None else {"PATH": os.environ.get("PATH", "")},
                          check=False)


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the python3.12 runtime brings (/var/runtime): boto3 and its dependencies, nothing else."""
    where = tmp_path_factory.mktemp("var-runtime")
    build.copy_installed(["boto3"], where, skip=())
    return where


@dataclass(frozen=True)
class Artifacts:
    """One service as Lambda unpacks it: the function archive in /var/task, its layer in /opt/python."""

    service: str
    task: Path
    layer: Path
    sizes: build.Sizes
    distributions: tuple[str, ...]


def host_layer(reqs: tuple[str, ...], where: Path) -> tuple[build.LayerArtifact, Path]:
    """A layer of `reqs` from the installed distributions, trimmed and zipped by the release code, unzipped."""
    staging = where / "python"
    build.copy_installed(reqs, staging)
    report = build.trim(staging)
    path = where / "layer.zip"
    digest, files = build.zip_dir(staging, path)
    dists = tuple(sorted(p.name.removesuffix(".dist-info") for p in staging.glob("*.dist-info")))
    layer = build.LayerArtifact("", "host", path, digest, path.stat().st_size, build.dir_bytes(staging), files,
                                report.bytes, dists)
    with zipfile.ZipFile(path) as zf:
        zf.extractall(where / "opt")
    return layer, where / "opt" / "python"


@pytest.fixture(scope="module")
def service_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifacts]:
    """Every service's function archive (as the program builds it) and its layer, unzipped as Lambda does.

    Services with the same requirements get one layer build (the same bytes); the builds run side by side.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for service in SERVICES:
        groups.setdefault(tuple(sorted(build.requirements(service))), []).append(service)
    dirs = [tmp_path_factory.mktemp(f"layer-{'-'.join(members)}") for members in groups.values()]
    with ThreadPoolExecutor(max_workers=min(len(groups), os.cpu_count() or 1)) as pool:
        layers = dict(zip(groups, pool.map(host_layer, groups, dirs), strict=True))
    out = {}
    for reqs, members in groups.items():
        layer, layer_dir = layers[reqs]
        for service in members:
            tmp = tmp_path_factory.mktemp(f"{service}-function")
            code = build_archive(service, tmp)
            with zipfile.ZipFile(code.path) as zf:
                zf.extractall(tmp / "var-task")
            sizes = build.check_limits(service, code.path, replace(layer, service=service))
            out[service] = Artifacts(service, tmp / "var-task", layer_dir, sizes, layer.distributions)
    return out


@pytest.mark.parametrize("service", SERVICES)
def test_artifacts_are_within_limits_and_carry_no_runtime_copies(service_artifacts: dict[str, Artifacts],
                                                                 service: str) -> None:
    art = service_artifacts[service]
    assert art.sizes.problems == () and art.sizes.total_unzipped < build.UNZIPPED_LIMIT
    if "pyarrow" not in build.requirements(service):
        assert not art.sizes.needs_s3  # the pyarrow layers are over 50 MB zipped: infra/artifacts.py stages them
    assert not any((art.layer / name).exists() for name in ("boto3", "botocore", "s3transfer"))
    shipped = {canonicalize_name(d.rsplit("-", 1)[0]) for d in art.distributions}
    assert {canonicalize_name(r) for r in build.requirements(service)} <= shipped
    assert sorted(p.name for p in art.task.iterdir()) == ["contracts", "services"]
    assert sorted(p.name for p in (art.task / "services").iterdir()) == ["__init__.py", service]


#: what a module may need at import time (clients are made, never called): an endpoint nothing listens on
OFFLINE_ENV = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}


@pytest.mark.parametrize("service", SERVICES)
def test_the_clean_interpreter_sees_only_the_artifacts_and_imports_every_module(
    service_artifacts: dict[str, Artifacts], runtime_dir: Path, service: str
) -> None:
    """Nothing from the host leaks in; every module of the service imports (not only those a sample event uses)."""
    art = service_artifacts[service]
    others = [f"services.{s}" for s in SERVICES if s != service]
    modules = sorted(".".join(p.relative_to(art.task).with_suffix("").parts).removesuffix(".__init__")
                     for p in (art.task / "services" / service).rglob("*.py"))
    out = clean_python(["import importlib, importlib.util as u",
                        f"print([m for m in {['duckdb', 'moto', 'pandas', 'etl', 'infra', *others]!r} "
                        "if u.find_spec(m)])",
                        "print(bool(u.find_spec('pyarrow')), bool(u.find_spec('boto3')))",
                        f"for m in {modules!r}:\n    importlib.import_module(m)"],
                       [art.task, art.layer, runtime_dir], env=OFFLINE_ENV)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[:2] == ["[]", f"{'pyarrow' in build.requirements(service)} True"]


# -- the program's functions, the emulated core, and invoking a handler -----------------------------------------
@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    """What the program declares in the dev stacks (core's outputs naming the moto resources below): each
    function's (handler, environment) by function name, and each HTTP API route by its route key."""
    out: dict[str, Any] = {}
    for service in SERVICES:
        run = run_stack(naming.stack_name(service, "dev"), RecordingBackend(), STACK_CONFIG.get(service, {}),
                        {"core-dev": CORE_OUTPUTS})
        for r in run.resources:
            if r.type == "aws:lambda/function:Function":
                out[r.inputs["name"]] = (r.inputs["handler"], dict(r.inputs["environment"]["variables"]))
            elif r.type == "aws:apigatewayv2/route:Route":
                method, _, path = r.inputs["routeKey"].partition(" ")
                out[r.inputs["routeKey"]] = Route(method, path, r.inputs.get("authorizationType", "NONE"))
    return out


class Lake:
    """Core's resources in moto (the names CORE_OUTPUTS gives), and what the functions published."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.observer = ""
        self.observed: list[dict[str, Any]] = []

    def out(self, key: str) -> str:
        return CORE_OUTPUTS[key]

    def events(self, detail_type: str, **detail: Any) -> list[dict[str, Any]]:
        """Every event published on the bus so far of this type (and detail values), checked against its contract."""
        sqs = boto3.client("sqs")
        while batch := sqs.receive_message(QueueUrl=self.observer, MaxNumberOfMessages=10).get("Messages", []):
            for m in batch:
                envelope = json.loads(m["Body"])
                contract_events.parse_event(envelope)
                self.observed.append(envelope)
                sqs.delete_message(QueueUrl=self.observer, ReceiptHandle=m["ReceiptHandle"])
        return [e for e in self.observed if e["detail-type"] == detail_type
                and all(e["detail"].get(k) == v for k, v in detail.items())]

    def resolve(self, env: dict[str, str]) -> dict[str, str]:
        """A function's environment with the service's own queues made in moto and their URLs put in."""
        sqs = boto3.client("sqs")
        resolved = dict(env)
        for key, value in env.items():
            if value.startswith("https://sqs."):
                resolved[key] = sqs.create_queue(QueueName=value.rsplit("/", 1)[-1])["QueueUrl"]
        return resolved

    def committer(self) -> PartitionCommitter:
        return PartitionCommitter.on_aws(bucket=self.out("lakeBucket"), table_name=self.out("stateTable"),
                                         database=self.out("glueDatabase"))

    def land(self, dataset: str, body: bytes, name: str, *, commit: bool) -> tuple[str, str]:
        """A landing object and its raw copy as ingest leaves them (object id, raw key); with `commit`, its rows
        transformed and committed in this process, as transform would."""
        oid = uuid.uuid4().hex[:20]
        s3 = boto3.client("s3")
        landing_key = f"{dataset}/{name}"
        etag = s3.put_object(Bucket=self.out("landingBucket"), Key=landing_key, Body=body)["ETag"].strip('"')
        raw_key = layout.raw_key(dataset, "2024-05-01", oid, name)
        s3.put_object(Bucket=self.out("rawBucket"), Key=raw_key, Body=body, Metadata={
            "etl-object-id": oid, "etl-source-bucket": self.out("landingBucket"), "etl-source-key": landing_key,
            "etl-source-etag": etag})
        if commit:
            ds = load_datasets()[dataset]
            result = transform(ds, body, object_id=oid, source=f"s3://{self.out('rawBucket')}/{raw_key}")
            committer = self.committer()
            for part in result.partitions:
                ref, op = PartitionRef(dataset, part.values), f"transform:{oid}:0:{partition_path(part.values)}"
                staged = committer.stage(ref, op, file_name(oid, 0, part.values), parquet_bytes(part.table, ds),
                                         part.table.num_rows)
                committer.append(ref, [staged], op)
            if result.rows_quarantined:
                sink = pa.BufferOutputStream()
                pq.write_table(result.quarantine, sink, compression="zstd")
                s3.put_object(Bucket=self.out("quarantineBucket"), Key=layout.quarantine_key(dataset, oid, 0),
                              Body=sink.getvalue().to_pybytes())
        return oid, raw_key

    def partition(self, dataset: str, values: list[str]) -> tuple[str, pa.Table]:
        """A partition's current location (from Glue) and every row a reader sees there."""
        glue, fs = boto3.client("glue"), aws.s3_filesystem()
        location = glue.get_partition(DatabaseName=self.out("glueDatabase"), TableName=dataset,
                                      PartitionValues=values)["Partition"]["StorageDescriptor"]["Location"]
        infos = fs.get_file_info(pafs.FileSelector(location.removeprefix("s3://"), allow_not_found=True))
        tables = [pq.read_table(i.path, filesystem=fs) for i in sorted(infos, key=lambda i: i.path)]
        return location, pa.concat_tables(tables) if tables else pa.table({})


@pytest.fixture(scope="module")
def lake(moto_endpoint: str) -> Lake:
    """What the core stack makes, made with boto3: buckets (versioned as core versions them), the state and
    idempotency tables, the Glue database with a table per contract, the bus (observed through a queue), topic."""
    s3, ddb, glue, events, sqs = (boto3.client(s) for s in ("s3", "dynamodb", "glue", "events", "sqs"))
    for purpose in ("landing", "raw", "lake", "quarantine"):
        s3.create_bucket(Bucket=CORE_OUTPUTS[f"{purpose}Bucket"])
        if purpose != "landing":
            s3.put_bucket_versioning(Bucket=CORE_OUTPUTS[f"{purpose}Bucket"],
                                     VersioningConfiguration={"Status": "Enabled"})
    ddb.create_table(TableName=CORE_OUTPUTS["idempotencyTable"], BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    ddb.create_table(TableName=CORE_OUTPUTS["stateTable"], BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])
    database = CORE_OUTPUTS["glueDatabase"]
    glue.create_database(DatabaseInput={"Name": database})
    for ds in load_datasets().values():
        create_dataset_table(glue, database, ds, CORE_OUTPUTS["lakeBucket"])
    boto3.client("sns").create_topic(Name=CORE_OUTPUTS["alertsTopicArn"].rsplit(":", 1)[-1])
    events.create_event_bus(Name=CORE_OUTPUTS["busName"])
    lk = Lake(moto_endpoint)
    lk.observer = sqs.create_queue(QueueName="art-observer")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=lk.observer, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sources = sorted({t.SOURCE for t in contract_events.EVENT_TYPES.values()})
    events.put_rule(Name="art-observer", EventBusName=CORE_OUTPUTS["busName"],
                    EventPattern=json.dumps({"source": sources}))
    events.put_targets(Rule="art-observer", EventBusName=CORE_OUTPUTS["busName"],
                       Targets=[{"Id": "observer", "Arn": arn}])
    return lk


#: one warm sandbox: the handler imported once, then called with each event in turn; each result on a RESULT line
INVOKE = textwrap.dedent("""
    import importlib, json, os
    class Context:
        memory_limit_in_mb, aws_request_id = 1024, "req-1"
        def __init__(self, name):
            self.function_name = name
            self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        def get_remaining_time_in_millis(self):
            return 300000
    def load(handler):
        module, _, name = handler.rpartition(".")
        return getattr(importlib.import_module(module), name)
    def invoke(handler, event, name):
        result = load(handler)(event, Context(name))
        print("RESULT", json.dumps(result), flush=True)
        return result
""")


@dataclass
class Invocation:
    results: list[Any]
    out: subprocess.CompletedProcess

    @property
    def logs(self) -> list[dict[str, Any]]:
        """The structured log lines the function wrote (powertools JSON)."""
        found = []
        for line in self.out.stdout.splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return found


def invoke(art: Artifacts, runtime_dir: Path, lake: Lake, functions: dict[str, Any], function: str,
           events: list[dict[str, Any]], script: str = "", **values: Any) -> Invocation:
    """Call the function's handler with each event (or run `script`, which may use `invoke`) in a clean
    interpreter that sees only the artifact and the runtime's boto3, with the environment the program gives it."""
    handler, env = functions[function]
    env = {"PATH": os.environ.get("PATH", ""), "AWS_ENDPOINT_URL": lake.endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           **lake.resolve(env)}
    body = script or "for event in EVENTS:\n    invoke(HANDLER, event, FUNCTION)"
    preamble = [f"{k} = json.loads({json.dumps(v)!r})" for k, v in
                {"HANDLER": handler, "FUNCTION": function, "EVENTS": events, **values}.items()]
    out = clean_python([INVOKE, *preamble, textwrap.dedent(body)], [art.task, art.layer, runtime_dir], env=env,
                       timeout=180)
    assert out.returncode == 0, out.stderr[-4000:]
    results = [json.loads(line.split(" ", 1)[1]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    return Invocation(results, out)


def sqs_event(*bodies: str, queue: str = "art-queue") -> dict[str, Any]:
    return {"Records": [{"messageId": f"m-{n}", "receiptHandle": f"r-{n}", "body": body,
                         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
                         "eventSource": "aws:sqs", "awsRegion": "us-east-1",
                         "eventSourceARN": f"arn:aws:sqs:us-east-1:{ACCOUNT}:{queue}"}
                        for n, body in enumerate(bodies)]}


def envelope(detail: contract_events.EventDetail) -> str:
    return json.dumps({"version": "0", "id": uuid.uuid4().hex, "detail-type": detail.DETAIL_TYPE,
                       "source": detail.SOURCE, "account": ACCOUNT, "time": "2024-05-01T10:00:00Z",
                       "region": "us-east-1", "resources": [], "detail": detail.model_dump(mode="json")})


def customers_csv(ids: list[int], bad: list[str] = (), day: str = "2023-03-15") -> bytes:  # type: ignore[assignment]
    rows = [f"{i},Name {i},u{i}@example.com,+4420{i % 10**7:07d},GB,{day}" for i in ids]
    return ("customer_id,name,email,phone,country,signup_date\n" + "\n".join([*rows, *bad]) + "\n").encode()


# -- each service's handler on a sample event, with only its artifacts ------------------------------------------
def test_ingest_handler_runs_a_sample_event_with_only_its_artifacts(
    service_artifacts: dict[str, Artifacts], runtime_dir: Path, lake: Lake, functions: dict[str, Any]
) -> None:
    s3 = boto3.client("s3")
    put = s3.put_object(Bucket=lake.out("landingBucket"), Key="customers/2024/c.csv", Body=b"customer_id,name\n1,Ada\n")
    object_created = {"version": "0", "id": "evt-1", "detail-type": "Object Created", "source": "aws.s3",
                      "account": ACCOUNT, "time": "2024-05-01T10:00:00Z", "region": "us-east-1", "resources": [],
                      "detail": {"bucket": {"name": lake.out("landingBucket")},
                                 "object": {"key": "customers/2024/c.csv", "size": 24,
                                            "etag": put["ETag"].strip('"')}}}
    run = invoke(service_artifacts["ingest"], runtime_dir, lake, functions, "etl-dev-ingest",
                 [sqs_event(json.dumps(object_created))])
    assert run.results == [{"batchItemFailures": []}]
    raw = s3.list_objects_v2(Bucket=lake.out("rawBucket"), Prefix="customers/received=").get("Contents", [])
    assert [o["Key"] for o in raw if o["Key"].endswith("/2024/c.csv")], raw
    assert lake.events("RawObjectStored", source_key="customers/2024/c.csv")


def test_transform_handler_turns_a_raw_object_into_parquet_with_only_its_artifacts(
    service_artifacts: dict[str, Artifacts], runtime_dir: Path, lake: Lake, functions: dict[str, Any]
) -> None:
    """RawObjectStored → plan (one chunk) → typed rows committed to a Glue partition, a bad row quarantined."""
    ids = list(range(501, 511))
    body = customers_csv(ids, bad=["not-a-number,X,x@example.com,,GB,2023-04-01"], day="2023-04-09")
    oid, raw_key = lake.land("customers", body, "t.csv", commit=False)
    stored = contract_events.RawObjectStored(
        dataset="customers", object_id=oid, raw_bucket=lake.out("rawBucket"), raw_key=raw_key, size=len(body),
        etag="e", source_bucket=lake.out("landingBucket"), source_key="customers/t.csv")
    run = invoke(service_artifacts["transform"], runtime_dir, lake, functions, "etl-dev-transform",
                 [sqs_event(envelope(stored))])
    assert run.results == [{"batchItemFailures": []}], run.out.stdout[-3000:]
    (done,) = lake.events("ObjectTransformed", object_id=oid)
    assert (done["detail"]["rows_in"], done["detail"]["rows_good"], done["detail"]["rows_quarantined"]) == (11, 10, 1)
    location, rows = lake.partition("customers", ["2023", "04"])
    assert "/gen=" in location and sorted(rows.column("customer_id").to_pylist()) == ids
    assert str(rows.schema.field("customer_id").type) == "int64" and str(rows.schema.field("signup_date").type) \
        .startswith("date32")
    (q,) = boto3.client("s3").list_objects_v2(Bucket=lake.out("quarantineBucket"),
                                              Prefix=f"customers/object={oid}/")["Contents"]
    assert pq.read_table(f"{lake.out('quarantineBucket')}/{q['Key']}", filesystem=aws.s3_filesystem()).num_rows == 1


def test_compact_handler_compacts_a_partition_and_sweeps_with_only_its_artifacts(
    service_artifacts: dict[str, Artifacts], runtime_dir: Path, lake: Lake, functions: dict[str, Any]
) -> None:
    """A batch with PartitionFilesAdded (below the threshold) and the CLI's compact command for a partition of
    three small files → one sorted file in a new generation; then the scheduled sweep and cleanup."""
    oids = [lake.land("customers", customers_csv([900 - 10 * n, 905 - 10 * n], day="2021-03-02"), f"s{n}.csv",
                      commit=True)[0] for n in range(3)]
    before, rows_before = lake.partition("customers", ["2021", "03"])
    values = {"signup_year": "2021", "signup_month": "03"}
    added = contract_events.PartitionFilesAdded(dataset="customers", partition=values, generation=1,
                                                files=["x.parquet"], rows=2, bytes=100, object_id=oids[-1])
    sweep = scheduled_event(f"arn:aws:events:us-east-1:{ACCOUNT}:rule/etl-dev-compact-sweep", "us-east-1")
    run = invoke(service_artifacts["compact"], runtime_dir, lake, functions, "etl-dev-compact",
                 [sqs_event(envelope(added), compact_message("customers", values)), sweep])
    assert run.results[0] == {"batchItemFailures": []}, run.out.stdout[-3000:]
    checked = [line for line in run.logs if line.get("message") == "partition checked"]
    assert [c["status"] for c in checked] == ["below-threshold", "compacted"]
    assert (checked[1]["files_before"], checked[1]["files_after"]) == (3, 1)
    # the sweep: nothing quiet for 15 min (dev's QUIET_SECONDS) nor past its 4 h grace (GRACE_SECONDS) yet
    assert run.results[1]["queued"] == 0 and run.results[1]["cleanup"]["objects_deleted"] == 0, run.results[1]
    after, rows_after = lake.partition("customers", ["2021", "03"])
    assert after != before and rows_after.num_rows == rows_before.num_rows == 6
    assert rows_after.column("customer_id").to_pylist() == sorted(rows_before.column("customer_id").to_pylist())
    assert lake.events("PartitionCompacted", dataset="customers", partition=values)


def test_erasure_handlers_take_a_request_through_a_run_with_only_their_artifacts(
    service_artifacts: dict[str, Artifacts], runtime_dir: Path, lake: Lake, functions: dict[str, Any]
) -> None:
    """The API files a request (202) and shows it (200); a run (run + worker handlers fed from their queues)
    erases the subject's rows from lake, quarantine and raw copy; the API then serves the certificate."""
    subject = 734512908
    others = [734512001, 734512002]
    body = customers_csv([subject, *others], bad=[f"{subject},Bad,x@example.com,,GB,not-a-date"], day="2022-07-01")
    _, raw_key = lake.land("customers", body, "e.csv", commit=True)
    _, rows_before = lake.partition("customers", ["2022", "07"])
    assert subject in rows_before.column("customer_id").to_pylist()
    run_fn, worker_fn = functions["etl-dev-erasure-run"], functions["etl-dev-erasure-worker"]
    for fn in ("etl-dev-erasure-api", "etl-dev-erasure-worker"):  # one process serves them all: same environment
        assert {**functions[fn][1], "POWERTOOLS_SERVICE_NAME": ""} == {**run_fn[1], "POWERTOOLS_SERVICE_NAME": ""}
    boto3.client("s3").create_bucket(Bucket=run_fn[1]["ERASURE_BUCKET"])
    for table in (run_fn[1]["ERASURE_TABLE"], run_fn[1]["VAULT_TABLE"]):  # the erasure stack's own tables
        boto3.client("dynamodb").create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])

    def http(method: str, route: str, body: Any = None) -> dict[str, Any]:
        """The payload-2.0 event API Gateway sends for this route of the program (the request id filled in later)."""
        path = route.replace("{id}", PENDING_ID)
        return proxy_event(functions[f"{method} {route}"], {"id": PENDING_ID} if "{id}" in route else {}, "art-api",
                           ACCOUNT, method, path, "", {"Content-Type": "application/json"},
                           json.dumps(body).encode() if body else b"")

    filed = invoke(service_artifacts["erasure"], runtime_dir, lake, functions, "etl-dev-erasure-api", [], script="""
        created = invoke(HANDLER, POST, FUNCTION)
        rid = json.loads(created["body"])["id"]
        event = json.loads(json.dumps(GET).replace(PENDING, rid))
        invoke(HANDLER, event, FUNCTION)
        invoke(HANDLER, RUN, FUNCTION)
    """, POST=http("POST", "/erasure-requests", body={"subject_ids": [str(subject)], "reason": "GDPR art. 17",
                                                      "requested_by": "dpo", "ticket": "T-1"}),
                     GET=http("GET", "/erasure-requests/{id}"), RUN=http("POST", "/erasure-runs"), PENDING=PENDING_ID)
    (created, shown, started) = filed.results
    assert created["statusCode"] == 202, created
    rid = json.loads(created["body"])["id"]
    assert shown["statusCode"] == 200 and json.loads(shown["body"])["state"] == "RECEIVED"
    assert started["statusCode"] == 202

    run = invoke(service_artifacts["erasure"], runtime_dir, lake, functions, "etl-dev-erasure-run", [], script="""
        import boto3
        from services.erasure.store import Store
        sqs = boto3.client("sqs")
        def deliver(url, handler, name):
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
            msgs = got.get("Messages", [])
            if msgs:
                event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                                      "body": m["Body"], "attributes": m["Attributes"], "messageAttributes": {},
                                      "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs", "awsRegion": "us-east-1",
                                      "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:" + url.rsplit("/", 1)[1]}
                                     for m in msgs]}
                out = invoke(handler, event, name)
                assert out == {"batchItemFailures": []}, out
                for m in msgs:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            return bool(msgs)
        for tick in range(30):
            if deliver(os.environ["RUN_QUEUE_URL"], HANDLER, FUNCTION):
                continue
            if deliver(os.environ["WORK_QUEUE_URL"], WORKER, "etl-dev-erasure-worker"):
                continue
            if not Store(os.environ["ERASURE_TABLE"]).active_runs():
                break
            invoke(HANDLER, SCHEDULE, FUNCTION)  # the schedule fires
        else:
            raise AssertionError("the run did not finish")
        for event in EVENTS:
            event = json.loads(json.dumps(event).replace(PENDING, RID))
            invoke(API, event, "etl-dev-erasure-api")
    """, WORKER=worker_fn[0], API=functions["etl-dev-erasure-api"][0], RID=rid, PENDING=PENDING_ID,
                 SCHEDULE=scheduled_event(f"arn:aws:events:us-east-1:{ACCOUNT}:rule/etl-dev-erasure-run", "us-east-1"),
                 EVENTS=[http("GET", "/erasure-requests/{id}"), http("GET", "/erasure-requests/{id}/certificate")])
    shown, certificate = run.results[-2:]
    assert shown["statusCode"] == 200 and json.loads(shown["body"])["state"] == "COMPLETED", shown
    assert certificate["statusCode"] == 200
    cert = json.loads(certificate["body"])
    assert cert["outcome"] == "COMPLETED" and cert["datasets"]["customers"]["rows_removed"] == 1
    assert cert["copies_purged"]["quarantine_rows_removed"] == 1 and cert["copies_purged"]["raw_lines_blanked"] == 2
    _, rows_after = lake.partition("customers", ["2022", "07"])
    assert sorted(rows_after.column("customer_id").to_pylist()) == others
    raw = boto3.client("s3").get_object(Bucket=lake.out("rawBucket"), Key=raw_key)["Body"].read()
    assert str(subject).encode() not in raw and b"734512001" in raw
    assert lake.events("ErasureCompleted", request_id=rid)
    for out in (filed.out, run.out):
        assert str(subject) not in out.stdout + out.stderr, "a subject id was printed"


def test_trimmed_pyarrow_and_numpy_still_work(tmp_path: Path) -> None:
    """The trim rules (tests, headers, sources, Flight, link-name copies) on the installed pyarrow and numpy."""
    layer = tmp_path / "python"
    build.copy_installed(["pyarrow", "numpy"], layer)
    report = build.trim(layer)
    assert report.bytes > 10 * build.MB
    assert not list(layer.glob("pyarrow/libarrow_flight.so*")) and not (layer / "pyarrow" / "include").exists()
    assert not list((layer / "pyarrow").glob("*.pxd")) and not list(layer.glob("numpy/**/tests"))
    out = clean_python([
        "import numpy as np, pyarrow as pa, pyarrow.parquet as pq, pyarrow.compute as pc, pyarrow.dataset, pyarrow.fs",
        "assert pa.array(np.arange(4)).to_numpy().sum() == 6",
        f"pq.write_table(pa.table({{'a': [1, 2, 3]}}), {str(tmp_path / 't.parquet')!r}, compression='zstd')",
        f"print(pc.sum(pq.read_table({str(tmp_path / 't.parquet')!r})['a']).as_py())",
        "try:\n    import pyarrow.flight\nexcept ImportError:\n    print('no flight')",
    ], [layer])
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["6", "no", "flight"]


# -- infra/artifacts.py under Pulumi mocks ---------------------------------------------------------------------------
class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.created: list[tuple[str, str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.created.append((args.typ, args.name, dict(args.inputs)))
        return f"{args.name}-id", {**args.inputs, "arn": f"arn:aws:lambda:::{args.name}"}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        return {}, []


def _layer_resources(tmp_path: Path, limit: int, bucket: str | None) -> list[tuple[str, str, dict[str, Any]]]:
    zip_path = tmp_path / "l.zip"
    zip_path.write_bytes(b"PK\x05\x06" + b"\0" * 18 + b"x" * 2000)
    art = build.LayerArtifact("transform", "arm64", zip_path, base64.b64encode(b"\1" * 32).decode(), 2022, 0, 0, 0, ())
    mocks = _Mocks()
    pulumi.runtime.set_mocks(mocks, project="etl", stack="transform-dev", preview=False)

    @pulumi.runtime.test
    def program() -> pulumi.Output:
        old = artifacts.DIRECT_UPLOAD_LIMIT
        artifacts.DIRECT_UPLOAD_LIMIT = limit
        try:
            layer = artifacts.layer_version("transform-deps", art, layer_name="etl-dev-transform-deps",
                                            architectures=["arm64"], bucket=bucket)
        finally:
            artifacts.DIRECT_UPLOAD_LIMIT = old
        return layer.arn

    program()
    return mocks.created


def test_small_layer_is_uploaded_directly(tmp_path: Path) -> None:
    created = _layer_resources(tmp_path, 50 * build.MB, None)
    assert [t for t, _, _ in created] == ["aws:lambda/layerVersion:LayerVersion"]
    inputs = created[0][2]
    assert inputs["compatibleArchitectures"] == ["arm64"] and inputs["compatibleRuntimes"] == ["python3.12"]
    assert inputs["layerName"] == "etl-dev-transform-deps" and "code" in inputs and "s3Key" not in inputs


def test_large_layer_is_staged_in_s3_under_a_content_addressed_key(tmp_path: Path) -> None:
    created = _layer_resources(tmp_path, 1000, "etl-dev-artifacts-123")
    types = [t for t, _, _ in created]
    assert types == ["aws:s3/bucketObjectv2:BucketObjectv2", "aws:lambda/layerVersion:LayerVersion"]
    obj, layer = created[0][2], created[1][2]
    assert obj["bucket"] == "etl-dev-artifacts-123" and obj["key"] == f"lambda/transform-deps/{'01' * 32}.zip"
    assert layer["s3Bucket"] == "etl-dev-artifacts-123" and layer["s3Key"] == obj["key"] and "code" not in layer


def test_large_layer_without_a_bucket_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="must be staged in S3"):
        _layer_resources(tmp_path, 1000, None)
