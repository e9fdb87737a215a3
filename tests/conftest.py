"""Shared fixtures: the repository root on sys.path, dummy AWS credentials (never real ones), a moto server."""

import logging
import os
import random
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

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

#: test modules that start the local platform (moto server + function hosts): kept on one xdist worker
PLATFORM_TESTS = ("tests/e2e/", "tests/console/")


def pytest_report_header(config: pytest.Config) -> str:
    """The seeds of this run, so a failure can be replayed (hypothesis prints its own on failure)."""
    return f"random seed: ETL_TEST_SEED={SEED} (hypothesis: its own, printed with any falsifying example)"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`--dist loadgroup` that keeps PLATFORM_TESTS on one worker, whatever the nodeids look like.

    xdist 3.8 groups by appending `@group` to `item._nodeid`, which pytest 9 no longer reads (nodeids
    come from `item._id`): the marks below were silently ignored, each platform test became a unit of
    its own, both workers started a platform, and a module's tests split across them ran its
    module-scoped fixtures twice. So the controller's scheduler groups by path itself.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class PlatformGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "local-platform" if nodeid.startswith(PLATFORM_TESTS) else super()._split_scope(nodeid)

    return PlatformGroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `pytest -n 2 --dist loadgroup`, every test that starts the local platform runs on one worker.

    Those tests share a session- or package-scoped platform; grouping them starts it once per run and
    leaves the other worker to the unit tests, which need none.
    """
    for item in items:
        path = item.path.relative_to(ROOT).as_posix() if item.path.is_relative_to(ROOT) else ""
        if path.startswith(PLATFORM_TESTS):
            item.add_marker(pytest.mark.xdist_group("local-platform"))


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
