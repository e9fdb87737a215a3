"""Run stacks of the real program under Pulumi's mock runtime with the recording backend."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import naming
from etl.local.program import Registered, StackRun, run_stack
from etl.local.recording import RecordingBackend

#: what core exports, as a StackReference would return it; odd values prove services read them
CORE_SENTINELS = {
    "landingBucket": "ref-landing", "landingBucketArn": "arn:aws:s3:::ref-landing",
    "rawBucket": "ref-raw", "rawBucketArn": "arn:aws:s3:::ref-raw",
    "lakeBucket": "ref-lake", "lakeBucketArn": "arn:aws:s3:::ref-lake",
    "quarantineBucket": "ref-quarantine", "quarantineBucketArn": "arn:aws:s3:::ref-quarantine",
    "busName": "ref-bus", "busArn": "arn:aws:events:eu-west-1:123456789012:event-bus/ref-bus",
    "archiveName": "ref-archive", "glueDatabase": "ref_db",
    "stateTable": "ref-state", "stateTableArn": "arn:aws:dynamodb:eu-west-1:123456789012:table/ref-state",
    "idempotencyTable": "ref-idem", "idempotencyTableArn": "arn:aws:dynamodb:eu-west-1:123456789012:table/ref-idem",
    "alertsTopicArn": "arn:aws:sns:eu-west-1:123456789012:ref-alerts",
    "artifactsBucket": "ref-artifacts", "athenaWorkgroup": "etl-dev",
}


class Stack:
    def __init__(self, run: StackRun) -> None:
        self.run = run

    @property
    def resources(self) -> list[Registered]:
        return self.run.resources

    def of_type(self, token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == token]

    def one(self, token: str, name: str) -> Registered:
        found = [r for r in self.of_type(token) if r.name == name]
        assert len(found) == 1, f"expected one {token} named {name}, got {[r.name for r in self.of_type(token)]}"
        return found[0]

    def policies(self) -> list[dict[str, Any]]:
        docs = [json.loads(r.inputs["policy"]) for r in self.of_type("aws:iam/rolePolicy:RolePolicy")]
        return [st for d in docs for st in d["Statement"]]


def build(stack: str, config: dict[str, Any] | None = None) -> Stack:
    refs = {"core-dev": CORE_SENTINELS, "core-test": CORE_SENTINELS, "core-local": CORE_SENTINELS}
    return Stack(run_stack(stack, RecordingBackend(), config or {}, refs))


@pytest.fixture(scope="session", autouse=True)
def built_layers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Stand-ins for what `etl build` makes: the program only hashes and uploads these zips."""
    out = tmp_path_factory.mktemp("build")
    for service in naming.SERVICES:
        for arch in ("arm64", "x86_64"):
            with zipfile.ZipFile(out / f"{service}-layer-{arch}.zip", "w") as zf:
                zf.writestr("python/placeholder.py", f"# {service} {arch}\n")
    previous = os.environ.get("ETL_BUILD_DIR")
    os.environ["ETL_BUILD_DIR"] = str(out)
    yield out
    if previous is None:
        os.environ.pop("ETL_BUILD_DIR", None)
    else:
        os.environ["ETL_BUILD_DIR"] = previous


@pytest.fixture(scope="module")
def core() -> Stack:
    return build("core-dev")


@pytest.fixture(scope="module")
def ingest() -> Stack:
    return build("ingest-dev")


@pytest.fixture(scope="module")
def transform() -> Stack:
    return build("transform-dev")


@pytest.fixture(scope="module")
def all_stacks(core: Stack, ingest: Stack, transform: Stack) -> list[Stack]:
    return [core, ingest, transform]
