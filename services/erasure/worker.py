"""Worker tasks of a run: one partition's lake files, one dataset's quarantine, or one raw object.

A message names only the run and its tasks (never a subject): several partitions of one dataset go
in one message (engine.message_groups), one invocation doing them one after another, each still its
own task with its own descriptor, checkpoint, commit and result. The descriptors are in the run's
workspace and the subjects are read from the vault, once per message. A task is idempotent: a
finished task is skipped, a partition task resumes from its checkpoint, and its commit replays under
the same op id. A task that fails does not stop the others of its message; the first error is raised
once they are done, so the message is delivered again and only the unfinished tasks run. When the
last task of a stage finishes, the worker sends the run a tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts.commits import PartitionCommitter
from contracts.datasets import Dataset, load_datasets
from contracts.lake import partition_path
from services.erasure import lake
from services.erasure.config import Config
from services.erasure.copies import erase_quarantine, erase_raw_object, raw_keys
from services.erasure.fingerprints import other_personal_columns
from services.erasure.hashing import redact
from services.erasure.members import RunSubjects, run_subjects
from services.erasure.runstate import LakeTask, QuarantineTask, RawTask, TaskResult
from services.erasure.store import NotFound, Run, Store
from services.erasure.workspace import RunWorkspace, Workspace, stage_of


@dataclass
class Worker:
    """What a task needs, and nothing of the run's own machinery (engine.py)."""

    store: Store
    workspace: Workspace
    committer: PartitionCommitter
    salt: bytes
    raw_bucket: str
    quarantine_bucket: str
    landing_bucket: str
    #: raw copies larger than this (decompressed) are deleted instead of rewritten
    raw_rewrite_max_bytes: int
    #: asks the run (by id) to advance: the last task of a stage calls it
    tick: Callable[[str], None]
    datasets: Mapping[str, Dataset] = field(default_factory=load_datasets)
    clock: Callable[[], float] = time.time

    @classmethod
    def of(cls, cfg: Config, *, store: Store, workspace: Workspace, committer: PartitionCommitter, salt: bytes,
           send: Callable[[str, dict[str, Any]], None], datasets: Mapping[str, Dataset] | None = None) -> Worker:
        """The worker of a deployed function: buckets and the run queue from its settings."""
        return cls(store=store, workspace=workspace, committer=committer, salt=salt, raw_bucket=cfg.raw_bucket,
                   quarantine_bucket=cfg.quarantine_bucket, landing_bucket=cfg.landing_bucket,
                   raw_rewrite_max_bytes=cfg.raw_rewrite_max_bytes,
                   tick=lambda run_id: send(cfg.run_queue_url, {"action": "advance", "run_id": run_id}),
                   datasets=datasets if datasets is not None else load_datasets())

    def safe_text(self, run: Run, text: str) -> str:
        """An error message fit for records and logs: any subject id of the run in it becomes its hash
        (a partition keyed by a subject column would otherwise carry the id in paths)."""
        return redact(text, run_subjects(self.store, run.state.requests, self.salt).ids, self.salt)


def _lake_task(w: Worker, run: Run, subjects: RunSubjects, task_id: str, task: LakeTask, deadline: float,
               hook: Callable[[str], None]) -> dict[str, Any]:
    subs = subjects.by_dataset.get(task.dataset)
    if subs is None:
        return {"generation": None, "files": [], "by_subject": {}, "lineage": {}, "rows_removed": 0}
    ds = w.datasets[task.dataset]
    part = lake.Partition(task.dataset, task.values, task.location)
    path = partition_path(ds.partition_names, task.values)
    known = lake.Known(task.version, task.hits) if task.version is not None and task.hits is not None else None
    out = lake.erase_partition(
        w.committer, part, subs.columns(ds),
        op_prefix=f"erasure:{run.id}:{task.attempt}:{task.dataset}:{path}",
        checkpoint=RunWorkspace(w.workspace, run.id).checkpoint(task_id), deadline=deadline, clock=w.clock,
        hook=hook, personal=other_personal_columns(ds), salt=w.salt, known=known,
    )
    by_hash = {subs.hashes[int(i)]: n for i, n in out.get("by_subject", {}).items()}
    return {**out, "by_subject": by_hash}


def _quarantine_task(w: Worker, run: Run, subjects: RunSubjects, task_id: str, task: QuarantineTask) -> dict[str, Any]:
    subs = subjects.by_dataset.get(task.dataset)
    if not subs:
        return {"files": [], "rows_removed": 0, "lineage": {}}
    memo = RunWorkspace(w.workspace, run.id).checkpoint(task_id)
    return erase_quarantine(w.quarantine_bucket, w.datasets[task.dataset], subs, memo)


def _raw_task(w: Worker, run: Run, task_id: str, task: RawTask) -> dict[str, Any]:
    ds = w.datasets[task.dataset]
    lines = run.state.lineage[task.dataset][task.object_id]
    keys = raw_keys(w.raw_bucket, task.dataset, [task.object_id])[task.object_id]
    rws = RunWorkspace(w.workspace, run.id)
    copies = [erase_raw_object(w.raw_bucket, key, lines, ds, max_bytes=w.raw_rewrite_max_bytes,
                               landing_bucket=w.landing_bucket, memo=rws.checkpoint(f"{task_id}.{n}"))
              for n, key in enumerate(keys)]
    return {"object_id": task.object_id, "lines": lines, "copies": copies}


class TasksFailed(RuntimeError):
    """Several tasks of one message failed: each one's error, by task id (value-free types and texts)."""

    def __init__(self, errors: Mapping[str, Exception]) -> None:
        self.errors = dict(errors)
        first = next(iter(self.errors.values()))
        super().__init__(f"{len(self.errors)} tasks failed; first: {type(first).__name__}: {first}")


def message_tasks(body: Mapping[str, Any]) -> list[str]:
    """The task ids a work message carries (`task_ids`; a message sent before groups: `task_id`)."""
    return list(body["task_ids"]) if "task_ids" in body else [body["task_id"]]


def run_tasks(
    w: Worker, run_id: str, task_ids: Sequence[str], *, deadline: float, hook: Callable[[str], None] = lambda s: None
) -> dict[str, Any]:
    """Do a message's tasks one after another, skipping finished ones; returns a value-free summary.

    Every task that finishes is recorded (result, done set) even when another fails or time runs out,
    so a redelivery or the continuation resumes with the rest. A failed task's error is raised after
    the others ran (`TasksFailed` when several failed); `OutOfTime` stops before the next task (or
    inside a partition, which has checkpointed), unless tasks failed before it: then their error is
    raised instead, so the message's receive count keeps growing toward the DLQ.
    """
    try:
        run = w.store.get_run(run_id)
    except NotFound:
        return {"status": "run gone"}
    todo = [t for t in task_ids if t not in run.done]
    if not todo or run.state.phase == "done":
        return {"status": "already done"}
    rws = RunWorkspace(w.workspace, run_id)
    subjects = run_subjects(w.store, run.state.requests, w.salt)
    finished: list[TaskResult] = []
    errors: dict[str, Exception] = {}
    try:
        for task_id in todo:
            if finished and w.clock() >= deadline:
                raise lake.OutOfTime(f"{len(finished)}/{len(todo)} tasks of the message done")
            task = rws.task(task_id)
            if task is None:
                continue
            try:
                if isinstance(task, LakeTask):
                    body = _lake_task(w, run, subjects, task_id, task, deadline, hook)
                elif isinstance(task, QuarantineTask):
                    body = _quarantine_task(w, run, subjects, task_id, task)
                else:
                    body = _raw_task(w, run, task_id, task)
                hook(f"task:{task.kind}")
            except lake.OutOfTime:
                raise
            except Exception as exc:  # the message's other tasks still run; raised below
                errors[task_id] = exc
                continue
            result = TaskResult.model_validate({**task.to_json(), **body, "task_id": task_id})
            rws.put_result(result)
            finished.append(result)
    except lake.OutOfTime:
        if not errors:
            raise
    finally:
        _done(w, run, [r.task_id for r in finished])
    if len(errors) == 1:
        raise next(iter(errors.values()))
    if errors:
        raise TasksFailed(errors) from next(iter(errors.values()))
    by_dataset: dict[str, dict[str, int]] = {}
    for r in finished:
        d = by_dataset.setdefault(r.dataset, {"rows_removed": 0, "files_rewritten": 0})
        d["rows_removed"] += r.rows_removed
        d["files_rewritten"] += r.files_changed()
    return {"status": "done" if finished else "task gone", "tasks": len(finished),
            "kinds": sorted({r.kind for r in finished}), "rows_removed": sum(r.rows_removed for r in finished),
            "files_rewritten": sum(r.files_changed() for r in finished), "by_dataset": by_dataset}


def _done(w: Worker, run: Run, task_ids: Sequence[str]) -> None:
    """Add finished tasks to the run's done set; tick the run when one of their stages is complete."""
    if not task_ids:
        return
    done = w.store.mark_done(run.id, task_ids)
    for stage in dict.fromkeys(stage_of(t) for t in task_ids):
        info = run.state.stages.get(stage)  # a stage's task list is fixed before its messages go out
        if set(info.tasks if info else []) <= done:
            w.tick(run.id)
            return


def record_failure(w: Worker, run_id: str, task_ids: Sequence[str], reason: str | Mapping[str, str]) -> None:
    """Last delivery failed: each unfinished task of the message counts as done with its failure (its own
    error when `reason` maps task ids to errors), so verification decides the outcome."""
    try:
        run = w.store.get_run(run_id)
    except NotFound:
        return
    rws = RunWorkspace(w.workspace, run_id)
    failed = []
    for task_id in task_ids:
        if task_id in run.done:
            continue
        why = reason if isinstance(reason, str) else reason.get(task_id, "not run: the message's other tasks "
                                                                          "failed and time ran out")
        task = rws.task(task_id)
        desc = task.to_json() if task else {}
        rws.put_result(TaskResult.model_validate({**desc, "task_id": task_id, "failed": w.safe_text(run, why)[:500]}))
        failed.append(task_id)
    _done(w, run, failed)
