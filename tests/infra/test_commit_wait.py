"""`etl:commitBusyWaitSeconds`, the one wait every lake writer forces, is set per stack and reaches the
committer of transform, compact and erasure (the grace periods have keys of their own)."""

from __future__ import annotations

import pytest

from contracts.commits import PartitionCommitter
from contracts.settings import CommitTimings, CompactSettings, ErasureSettings, TransformSettings
from services.compact.handler import Env as CompactEnv
from services.erasure import handlers as erasure_handlers
from services.transform import handler as transform_handler
from tests.infra.harness import build

WRITERS = [("transform-dev", "transform", TransformSettings), ("compact-dev", "compact", CompactSettings),
           ("erasure-dev", "erasure-worker", ErasureSettings), ("erasure-dev", "erasure-run", ErasureSettings)]


def env_of(stack: str, fn: str, config: dict[str, object] | None = None) -> dict[str, str]:
    built = build(stack, config)
    return built.one("aws:lambda/function:Function", f"{fn}-function").inputs["environment"]["variables"]


@pytest.mark.parametrize(("stack", "fn", "model"), WRITERS)
def test_the_busy_wait_is_set_per_stack_and_read_back(stack: str, fn: str, model: type[CommitTimings]) -> None:
    assert model.from_environ(env_of(stack, fn)).commit_busy_wait_s == 20
    short = env_of(stack, fn, {"commitBusyWaitSeconds": 2.5})
    assert short["COMMIT_BUSY_WAIT_SECONDS"] == "2.5"
    assert model.from_environ(short).commit_busy_wait_s == 2.5


def test_each_writer_commits_with_the_wait_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"BUS_NAME": "bus", "LAKE_BUCKET": "lake", "RAW_BUCKET": "raw", "QUARANTINE_BUCKET": "q",
           "ERASURE_BUCKET": "e", "STATE_TABLE": "state", "GLUE_DATABASE": "db", "QUEUE_NAME": "queue",
           "COMMIT_BUSY_WAIT_SECONDS": "2.5"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    committers: list[PartitionCommitter] = [
        transform_handler._committer(TransformSettings.from_environ()),
        erasure_handlers._committer(ErasureSettings.from_environ()),
    ]
    assert [c.settings.busy_wait_seconds for c in committers] == [2.5, 2.5]
    assert CompactEnv.from_environ().settings.busy_wait_seconds == 2.5


def test_a_wait_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="COMMIT_BUSY_WAIT_SECONDS"):
        TransformSettings.from_environ({"BUS_NAME": "b", "LAKE_BUCKET": "l", "QUARANTINE_BUCKET": "q",
                                        "STATE_TABLE": "s", "GLUE_DATABASE": "d", "COMMIT_BUSY_WAIT_SECONDS": "0"})
