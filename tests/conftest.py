"""Shared fixtures: the repository root on sys.path, dummy AWS credentials (never real ones), a moto server."""

import logging
import os
import random
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

for _key, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_METRICS_NAMESPACE": "etl-test",
}.items():
    os.environ.setdefault(_key, _value)
for _key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_key, None)

#: the seed of every run-random choice in the tests (ids, subject numbers): set ETL_TEST_SEED to replay a run.
#: Chosen once in the controlling process, so pytest-xdist workers (started after this import) inherit it.
SEED = int(os.environ.setdefault("ETL_TEST_SEED", str(random.SystemRandom().randrange(2**32))))

#: Test modules that start a local platform, by xdist work group (`make test`: `pytest -n 3 --dist loadgroup`).
#: A group runs on one worker, which starts the group's platforms once (tests/e2e: one per session and worker;
#: tests/console: its own, with four-eyes approval on). Two groups of about equal time, one per worker, while a
#: third worker takes the unit tests: platform tests mostly wait for the platform's processes, so three workers
#: keep two cores busy (measurements: docs/design/test-suite.md). Every module uses keys, prefixes and ids of
#: its own, so any split is correct; a new platform module must be given a group (platform_group raises).
PLATFORM_GROUPS = {
    "tests/console/": "platform-1",
    "tests/e2e/test_erasure_flow.py": "platform-1",
    "tests/e2e/test_schema_evolution.py": "platform-1",
    "tests/e2e/test_compact_flow.py": "platform-2",
    "tests/e2e/test_erasure_races_compaction.py": "platform-2",
    "tests/e2e/test_hostile_objects.py": "platform-2",
    "tests/e2e/test_ingest_flow.py": "platform-2",
    "tests/e2e/test_transform_flow.py": "platform-2",
}

#: The longest modules of the rest, longest first (single process, `--durations`): handed out right after the
#: platform groups, so none of them starts last and keeps one worker busy while the others have nothing left
#: (xdist orders the rest by number of tests, which put the 7 tests of test_erasure_verify.py near the end).
#: Only the order depends on this list; a module missing from it still runs.
LONG_MODULES = (
    "tests/ops/test_build.py",
    "tests/services/test_erasure_engine.py",
    "tests/services/test_erasure_verify.py",
    "tests/contracts/test_commits_property.py",
    "tests/services/test_erasure_groups.py",
    "tests/services/test_transform_property.py",
    "tests/contracts/test_commits_aws.py",
)


def platform_group(nodeid: str) -> str | None:
    """The work group of a test that starts a local platform; None for every other test."""
    path = nodeid.split("::", 1)[0]
    for prefix, group in PLATFORM_GROUPS.items():
        if path.startswith(prefix):
            return group
    if path.startswith(("tests/e2e/test_", "tests/console/test_")):
        raise LookupError(f"{path} starts a local platform: give it a group in tests/conftest.py PLATFORM_GROUPS")
    return None


def pytest_report_header(config: pytest.Config) -> str:
    """The seeds of this run, so a failure can be replayed (hypothesis prints its own on failure)."""
    return f"random seed: ETL_TEST_SEED={SEED} (hypothesis: its own, printed with any falsifying example)"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` with the groups above: each group on one worker, every other module on any.

    A scheduler, not `xdist_group` marks: pytest-xdist 3.8 groups by rewriting `item._nodeid`, which
    pytest 9.2 no longer reads, so marks silently spread a group over both workers (and every worker
    started every platform). The scheduler sees the node ids themselves.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class PlatformGroups(LoadScopeScheduling):
        """Work units: a whole platform group, or one module (its module-scoped fixtures, such as the layer
        builds of tests/ops/test_build.py or a moto server, then run once, not once per worker). The groups
        are handed out first, so each starts at once; then LONG_MODULES; then the modules with the most tests."""

        def _split_scope(self, nodeid: str) -> str:
            return platform_group(nodeid) or nodeid.split("::", 1)[0]

        def _assign_work_unit(self, node: Any) -> None:
            first = [*sorted(set(PLATFORM_GROUPS.values())), *LONG_MODULES]
            for unit in reversed(first):
                if unit in self.workqueue:
                    self.workqueue.move_to_end(unit, last=False)
            super()._assign_work_unit(node)

    return PlatformGroups(config, log)


@pytest.fixture(scope="session", autouse=True)
def built_layers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Stand-ins for what `etl build` makes: the program only hashes and uploads these zips."""
    out = tmp_path_factory.mktemp("build")
    from contracts import naming

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
def moto_endpoint() -> Iterator[str]:
    """A moto server on a free loopback port for the module, reached over HTTP like AWS (tests set the env)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's backends are process-global: every ThreadedMotoServer of a process serves the same state, so a module
    # run after another in the same (xdist) worker would find its tables and buckets. Start each module empty.
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=30)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
