"""Several partitions in one worker message, against moto server: each is still its own task.

A message that runs out of time, is delivered twice, or has a partition failing inside it must not
lose the finished partitions' progress nor redo them; and a task handed FIND's hits probes only those
files unless its partition changed since FIND (then the whole partition, so a late append is erased too).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from services.erasure import engine, lake, worker
from services.erasure.model import State
from services.erasure.runstate import LakeTask, QuarantineTask
from services.erasure.workspace import RunWorkspace
from tests.services.erasure_world import World, orders_jsonl, subject_rows

SUBJECT = 7


def _seed_months(w: World) -> Counter:
    """Subject 7 in each of four month partitions of orders, next to other customers' rows."""
    w.land("orders", orders_jsonl([(i, SUBJECT if i <= 8 else 1) for i in range(1, 17)]), "months.jsonl")
    return w.lake_rows("orders")


def _one_message(w: World, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    """Start the run with every partition task in one message; (run id, its task ids)."""
    monkeypatch.setattr(engine, "GROUP_SPREAD", 1)
    w.engine.tick(start=True, deadline=time.time() + 300)
    lake_msgs = [m for m in w.work if len(worker.message_tasks(m)) > 1]
    assert len(lake_msgs) == 1, w.work
    return lake_msgs[0]["run_id"], worker.message_tasks(lake_msgs[0])


def _taken_message(w: World, monkeypatch: pytest.MonkeyPatch) -> tuple[Counter, str, str, list[str]]:
    """Seed four month partitions, request the subject's erasure and take the one lake message off the queue
    (the test delivers it itself): (lake rows before, request id, run id, the message's task ids)."""
    before = _seed_months(w)
    rid = w.request([str(SUBJECT)], ["orders"])
    run_id, tasks = _one_message(w, monkeypatch)
    w.work = [m for m in w.work if worker.message_tasks(m) != tasks]
    return before, rid, run_id, tasks


def _lake_results(w: World, run_id: str) -> dict[str, Any]:
    run = w.store.get_run(run_id)
    return {r.task_id: r for r in RunWorkspace(w.worker.workspace, run_id).results(run.state, "lake")
            if r.kind == "lake"}


def test_message_groups_spread_partitions_and_keep_other_tasks_alone() -> None:
    def lake_task(ds: str) -> LakeTask:
        return LakeTask(dataset=ds, values={"m": "1"}, location="s3://b/x", stage="lake", attempt=1)

    tasks = [lake_task("a") for _ in range(40)] + [lake_task("b") for _ in range(3)] + \
        [QuarantineTask(dataset="a", stage="lake", attempt=1)]
    ids = [f"1.lake.{n:05d}" for n in range(len(tasks))]
    groups = engine.message_groups(ids, tasks)
    assert sorted(t for g in groups for t in g) == sorted(ids), "every task in exactly one message"
    a = [g for g in groups if g[0] in ids[:40]]
    assert [len(g) for g in a] == [3] * 13 + [1], "40 partitions over at least 16 messages"
    assert [g for g in groups if g[0] in ids[40:43]] == [[i] for i in ids[40:43]]
    assert groups[-1] == [ids[-1]], "a quarantine task goes alone"
    big = engine.message_groups([f"t{n}" for n in range(1000)], [lake_task("a")] * 1000)
    assert max(map(len, big)) == engine.GROUP_MAX


def test_a_message_out_of_time_then_delivered_twice_skips_finished_partitions(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    before, rid, run_id, tasks = _taken_message(w, monkeypatch)
    assert len(tasks) == 4
    steps: list[str] = []

    def hook(step: str) -> None:
        steps.append(step)
        if step == "task:lake" and steps.count(step) == 2:
            monkeypatch.setattr(w.worker, "clock", lambda: float("inf"))  # the invocation's time is up

    with pytest.raises(lake.OutOfTime):
        worker.run_tasks(w.worker, run_id, tasks, deadline=time.time() + 300, hook=hook)
    assert w.store.get_run(run_id).done == set(tasks[:2]), "the two finished partitions are recorded"
    monkeypatch.setattr(w.worker, "clock", time.time)
    for _ in range(2):  # the continuation, and a duplicate delivery of it
        worker.run_tasks(w.worker, run_id, tasks, deadline=time.time() + 300, hook=hook)
    assert steps.count("committed") == 4 and steps.count("file-rewritten") == 4, "each partition once"
    assert set(tasks) <= w.store.get_run(run_id).done
    w.drive(start=False)
    assert w.store.get(rid).state == State.COMPLETED
    assert w.lake_rows("orders") == before - subject_rows(before, {SUBJECT}, 1)


def test_a_partition_failing_inside_a_message_keeps_the_others_progress(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    before, rid, run_id, tasks = _taken_message(w, monkeypatch)
    failing = tasks[1]
    calls: Counter = Counter()
    erase = lake.erase_partition

    def flaky(committer: Any, part: lake.Partition, *a: Any, **k: Any) -> dict[str, Any]:
        name = next(t for t in tasks if _task(w, run_id, t).values == dict(part.values))
        calls[name] += 1
        if name == failing:
            raise RuntimeError("PartitionBusy: a writer holds it")
        return erase(committer, part, *a, **k)

    monkeypatch.setattr(lake, "erase_partition", flaky)
    with pytest.raises(RuntimeError, match="PartitionBusy"):
        worker.run_tasks(w.worker, run_id, tasks, deadline=time.time() + 300)
    assert w.store.get_run(run_id).done == set(tasks) - {failing}, "the others ran after the failure"
    with pytest.raises(RuntimeError, match="PartitionBusy"):  # the redelivery runs only the failed one
        worker.run_tasks(w.worker, run_id, tasks, deadline=time.time() + 300)
    assert calls == Counter({failing: 2, **{t: 1 for t in tasks if t != failing}})
    # the last delivery: only the unfinished task is recorded as failed; the others keep their results
    worker.record_failure(w.worker, run_id, tasks, {failing: "RuntimeError: PartitionBusy: a writer holds it"})
    results = _lake_results(w, run_id)
    assert results[failing].failed and all(results[t].ok and results[t].generation for t in tasks if t != failing)
    monkeypatch.setattr(lake, "erase_partition", erase)
    w.drive(start=False)  # later attempts find the failed partition's rows and erase them
    assert w.lake_rows("orders") == before - subject_rows(before, {SUBJECT}, 1)
    req = w.store.get(rid)
    assert req.state == State.FAILED and f"lake task {failing}: RuntimeError: PartitionBusy" in (req.error or ""), \
        "a task that failed for good is reported, never certified away"


@pytest.mark.parametrize("appended", [False, True], ids=["unchanged", "appended-since-find"])
def test_a_task_probes_finds_hits_only_while_its_partition_is_unchanged(
        world: World, monkeypatch: pytest.MonkeyPatch, appended: bool) -> None:
    w = world
    w.land("orders", orders_jsonl([(1, SUBJECT), (5, 1)]), "a.jsonl")  # both in 2024-02
    w.land("orders", orders_jsonl([(9, 1), (13, 2)]), "b.jsonl")  # 2024-02 too, no subject
    rid = w.request([str(SUBJECT)], ["orders"])
    w.engine.tick(start=True, deadline=time.time() + 300)
    run_id = w.store.get(rid).run_id
    descriptors = [_task(w, run_id, t) for m in w.work for t in worker.message_tasks(m)]
    (task,) = [t for t in descriptors if isinstance(t, LakeTask)]
    assert task.version is not None and task.hits is not None and len(task.hits) == 1, "FIND's hit, handed over"
    if appended:  # a late append of the subject into the partition, after FIND
        w.land("orders", orders_jsonl([(17, SUBJECT)]), "late.jsonl")
    before = w.lake_rows("orders")
    probed: list[str] = []
    real = lake.probe

    def counting(blob: Any, columns: Any) -> Any:
        probed.append(blob.key)
        return real(blob, columns)

    monkeypatch.setattr(lake, "probe", counting)
    for msg in w.work:  # the lake stage's messages, as the worker function gets them
        worker.run_tasks(w.worker, run_id, worker.message_tasks(msg), deadline=time.time() + 300)
    monkeypatch.setattr(lake, "probe", real)
    w.work = []
    assert len(probed) == (3 if appended else 1), "every file of a partition changed since FIND, else the hit"
    w.drive(start=False)
    assert w.store.get(rid).state == State.COMPLETED
    assert w.store.get_run(run_id).state.attempt == 1, "a late append is erased by the same attempt"
    assert w.lake_rows("orders") == before - subject_rows(before, {SUBJECT}, 1)


def _task(w: World, run_id: str, task_id: str) -> Any:
    return RunWorkspace(w.worker.workspace, run_id).task(task_id)
