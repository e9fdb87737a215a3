"""Lambda layers: platform selection, trimming, reproducibility, limits — and artifacts that run alone.

No test reaches the network: pip installs from wheels made here (`--no-index`), and the host-architecture
artifacts are made from this environment's installed distributions, trimmed by the same rules.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pulumi
import pytest

from etl import build
from infra import artifacts
from infra.packaging import build_archive


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
    assert len(sizes.problems) == 1 and "ingest: function + layer unzipped is 250.1 MB, over" in sizes.problems[0]


# -- host-architecture artifacts run alone ------------------------------------------------------------------------
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


@pytest.fixture(scope="module")
def ingest_artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, build.Sizes]:
    """The ingest function archive (as the program builds it) and a layer from the installed distributions,
    trimmed and zipped by the release code, then unzipped as Lambda does (/var/task, /opt)."""
    tmp = tmp_path_factory.mktemp("ingest-artifacts")
    code = build_archive("ingest", tmp)
    staging = tmp / "layer"
    build.copy_installed(build.requirements("ingest"), staging)
    build.trim(staging)
    digest, files = build.zip_dir(staging, tmp / "ingest-layer.zip")
    layer = build.LayerArtifact("ingest", "host", tmp / "ingest-layer.zip", digest,
                                (tmp / "ingest-layer.zip").stat().st_size, build.dir_bytes(staging), files, 0, ())
    task, opt = tmp / "var-task", tmp / "opt"
    zipfile.ZipFile(code.path).extractall(task)
    zipfile.ZipFile(layer.path).extractall(opt)
    return task, opt / "python", build.check_limits("ingest", code.path, layer)


def test_ingest_artifacts_are_within_limits_and_carry_no_runtime_copies(ingest_artifacts: Any) -> None:
    task, layer, sizes = ingest_artifacts
    assert sizes.problems == () and not sizes.needs_s3
    assert sizes.total_unzipped < build.UNZIPPED_LIMIT
    assert not (layer / "boto3").exists() and not (layer / "botocore").exists()
    assert (layer / "aws_lambda_powertools").is_dir() and (layer / "pydantic_core").is_dir()
    assert sorted(p.name for p in task.iterdir()) == ["contracts", "services"]


def test_the_clean_interpreter_sees_only_the_artifacts(ingest_artifacts: Any, runtime_dir: Path) -> None:
    task, layer, _ = ingest_artifacts
    out = clean_python(["import importlib.util as u",
                        "print([m for m in ('pyarrow', 'duckdb', 'moto', 'etl', 'infra') if u.find_spec(m)])"],
                       [task, layer, runtime_dir])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_ingest_handler_runs_a_sample_event_with_only_its_artifacts(
    ingest_artifacts: Any, runtime_dir: Path, moto_endpoint: str
) -> None:
    task, layer, _ = ingest_artifacts
    s3, ddb, events = (boto3.client(s) for s in ("s3", "dynamodb", "events"))
    for bucket in ("art-landing", "art-raw"):
        s3.create_bucket(Bucket=bucket)
    put = s3.put_object(Bucket="art-landing", Key="customers/2024/c.csv", Body=b"customer_id,name\n1,Ada\n")
    ddb.create_table(TableName="art-idem", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    ddb.create_table(TableName="art-state", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])
    events.create_event_bus(Name="art-bus")
    envelope = {"version": "0", "id": "evt-1", "detail-type": "Object Created", "source": "aws.s3",
                "account": "123456789012", "time": "2024-05-01T10:00:00Z", "region": "us-east-1", "resources": [],
                "detail": {"bucket": {"name": "art-landing"},
                           "object": {"key": "customers/2024/c.csv", "size": 24, "etag": put["ETag"].strip('"')}}}
    event = {"Records": [{"messageId": "m-1", "receiptHandle": "r-1", "body": json.dumps(envelope),
                          "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                          "md5OfBody": "", "eventSource": "aws:sqs", "awsRegion": "us-east-1",
                          "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:art-queue"}]}
    script = textwrap.dedent(f"""
        import json
        import services.ingest.handler as h
        class Context:
            function_name, memory_limit_in_mb, aws_request_id = "etl-art-ingest", 1024, "req-1"
            invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:etl-art-ingest"
            def get_remaining_time_in_millis(self):
                return 300000
        print("RESULT", json.dumps(h.handler({json.dumps(event)!r} and json.loads({json.dumps(event)!r}), Context())))
    """)
    env = {"PATH": os.environ.get("PATH", ""), "AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "ETL_ENV": "art",
           "BUS_NAME": "art-bus", "RAW_BUCKET": "art-raw", "IDEMPOTENCY_TABLE": "art-idem",
           "STATE_TABLE": "art-state", "POWERTOOLS_SERVICE_NAME": "ingest", "POWERTOOLS_METRICS_NAMESPACE": "etl"}
    out = clean_python([script], [task, layer, runtime_dir], env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert result == {"batchItemFailures": []}
    raw = s3.list_objects_v2(Bucket="art-raw").get("Contents", [])
    assert len(raw) == 1 and raw[0]["Key"].startswith("customers/received=") and raw[0]["Key"].endswith("/2024/c.csv")


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
