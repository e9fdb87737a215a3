"""Worker tasks of a run: one partition's lake files, one dataset's quarantine, or one raw object.

A task message names only the run and the task (never a subject); the descriptor is in the run's
workspace and the subjects are read from the vault. A task is idempotent: a finished task is
skipped, a partition task resumes from its checkpoint, and its commit replays under the same op id.
When the last task of a stage finishes, the worker sends the run a tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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
from services.erasure.members import run_subjects
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


def _lake_task(w: Worker, run: Run, task_id: str, task: LakeTask, deadline: float,
               hook: Callable[[str], None]) -> dict[str, Any]:
    subjects = run_subjects(w.store, run.state.requests, w.salt).by_dataset.get(task.dataset)
    if subjects is None:
        return {"generation": None, "files": [], "by_subject": {}, "lineage": {}, "rows_removed": 0}
    ds = w.datasets[task.dataset]
    part = lake.Partition(task.dataset, task.values, task.location)
    path = partition_path(ds.partition_names, task.values)
    out = lake.erase_partition(
        w.committer, part, subjects.columns(ds),
        op_prefix=f"erasure:{run.id}:{task.attempt}:{task.dataset}:{path}",
        checkpoint=RunWorkspace(w.workspace, run.id).checkpoint(task_id), deadline=deadline, clock=w.clock,
        hook=hook, personal=other_personal_columns(ds), salt=w.salt,
    )
    by_hash = {subjects.hashes[int(i)]: n for i, n in out.get("by_subject", {}).items()}
    return {**out, "by_subject": by_hash}


def _quarantine_task(w: Worker, run: Run, task_id: str, task: QuarantineTask) -> dict[str, Any]:
    subjects = run_subjects(w.store, run.state.requests, w.salt).by_dataset.get(task.dataset)
    if not subjects:
        return {"files": [], "rows_removed": 0, "lineage": {}}
    memo = RunWorkspace(w.workspace, run.id).checkpoint(task_id)
    return erase_quarantine(w.quarantine_bucket, w.datasets[task.dataset], subjects, memo)


def _raw_task(w: Worker, run: Run, task_id: str, task: RawTask) -> dict[str, Any]:
    ds = w.datasets[task.dataset]
    lines = run.state.lineage[task.dataset][task.object_id]
    keys = raw_keys(w.raw_bucket, task.dataset, [task.object_id])[task.object_id]
    rws = RunWorkspace(w.workspace, run.id)
    copies = [erase_raw_object(w.raw_bucket, key, lines, ds, max_bytes=w.raw_rewrite_max_bytes,
                               landing_bucket=w.landing_bucket, memo=rws.checkpoint(f"{task_id}.{n}"))
              for n, key in enumerate(keys)]
    return {"object_id": task.object_id, "lines": lines, "copies": copies}


def run_task(
    w: Worker, run_id: str, task_id: str, *, deadline: float, hook: Callable[[str], None] = lambda s: None
) -> dict[str, Any]:
    """Do one task (or notice it is done); returns a value-free summary for the log."""
    try:
        run = w.store.get_run(run_id)
    except NotFound:
        return {"status": "run gone"}
    if task_id in run.done or run.state.phase == "done":
        return {"status": "already done"}
    task = RunWorkspace(w.workspace, run_id).task(task_id)
    if task is None:
        return {"status": "task gone"}
    if isinstance(task, LakeTask):
        body = _lake_task(w, run, task_id, task, deadline, hook)
    elif isinstance(task, QuarantineTask):
        body = _quarantine_task(w, run, task_id, task)
    else:
        body = _raw_task(w, run, task_id, task)
    hook(f"task:{task.kind}")
    result = TaskResult.model_validate({**task.to_json(), **body, "task_id": task_id})
    finish(w, run_id, result)
    return {"status": "done", "kind": task.kind, "dataset": task.dataset, "rows_removed": result.rows_removed,
            "files_rewritten": result.files_changed()}


def finish(w: Worker, run_id: str, result: TaskResult) -> None:
    """Record the result, add the task to the run's done set, tick the run if the stage is complete."""
    RunWorkspace(w.workspace, run_id).put_result(result)
    done = w.store.mark_done(run_id, [result.task_id])
    run = w.store.get_run(run_id)
    info = run.state.stages.get(stage_of(result.task_id))
    if set(info.tasks if info else []) <= done:
        w.tick(run_id)


def record_failure(w: Worker, run_id: str, task_id: str, reason: str) -> None:
    """Last delivery failed: the task counts as done with its failure, so verification decides the outcome."""
    try:
        run = w.store.get_run(run_id)
    except NotFound:
        return
    task = RunWorkspace(w.workspace, run_id).task(task_id)
    desc = task.to_json() if task else {}
    finish(w, run_id, TaskResult.model_validate({**desc, "task_id": task_id,
                                                 "failed": w.safe_text(run, reason)[:500]}))
