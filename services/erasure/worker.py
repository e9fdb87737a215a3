"""Worker tasks of a run: one partition's lake files, one dataset's quarantine, or one raw object.

A task message names only the run and the task (never a subject); the descriptor is in the run's
workspace and the subjects are read from the vault. A task is idempotent: a finished task is
skipped, a partition task resumes from its checkpoint, and its commit replays under the same op id.
When the last task of a stage finishes, the worker sends the run a tick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts.lake import partition_path
from services.erasure import lake
from services.erasure.copies import erase_quarantine, erase_raw_object, raw_keys
from services.erasure.engine import Engine
from services.erasure.fingerprints import other_personal_columns
from services.erasure.hashing import redact
from services.erasure.store import NotFound
from services.erasure.workspace import run_prefix


class WorkspaceCheckpoint(lake.Checkpoint):
    def __init__(self, engine: Engine, run_id: str, task_id: str) -> None:
        self.engine, self.key = engine, f"{run_prefix(run_id)}checkpoints/{task_id}.json"

    def load(self) -> dict[str, Any] | None:
        return self.engine.ws.get_json(self.key)

    def save(self, data: dict[str, Any]) -> None:
        self.engine.ws.put_json(self.key, data)


def _lake_task(engine: Engine, run: Any, task_id: str, desc: dict[str, Any], deadline: float,
               hook: Callable[[str], None]) -> dict[str, Any]:
    subjects = engine.subjects(run).by_dataset.get(desc["dataset"])
    if subjects is None:
        return {"generation": None, "files": [], "by_subject": {}, "lineage": {}, "rows_removed": 0}
    ds = engine.datasets[desc["dataset"]]
    part = lake.Partition(desc["dataset"], desc["values"], desc["location"])
    path = partition_path(ds.partition_names, desc["values"])
    out = lake.erase_partition(
        engine.committer, part, subjects.columns(ds),
        op_prefix=f"erasure:{run.id}:{desc['attempt']}:{desc['dataset']}:{path}",
        checkpoint=WorkspaceCheckpoint(engine, run.id, task_id), deadline=deadline, clock=engine.clock, hook=hook,
        personal=other_personal_columns(ds), salt=engine.salt,
    )
    by_hash = {subjects.hashes[int(i)]: n for i, n in out.get("by_subject", {}).items()}
    return {**out, "by_subject": by_hash}


def _raw_task(engine: Engine, run: Any, task_id: str, desc: dict[str, Any]) -> dict[str, Any]:
    ds = engine.datasets[desc["dataset"]]
    lines = run.body["lineage"][desc["dataset"]][desc["object_id"]]
    keys = raw_keys(engine.cfg.raw_bucket, desc["dataset"], [desc["object_id"]])[desc["object_id"]]
    copies = [erase_raw_object(engine.cfg.raw_bucket, key, lines, ds, max_bytes=engine.cfg.raw_rewrite_max_bytes,
                               landing_bucket=engine.cfg.landing_bucket,
                               memo=WorkspaceCheckpoint(engine, run.id, f"{task_id}.{n}"))
              for n, key in enumerate(keys)]
    return {"object_id": desc["object_id"], "lines": lines, "copies": copies}


def run_task(
    engine: Engine, run_id: str, task: str, *, deadline: float, hook: Callable[[str], None] = lambda s: None
) -> dict[str, Any]:
    """Do one task (or notice it is done); returns a value-free summary for the log."""
    try:
        run = engine.store.get_run(run_id)
    except NotFound:
        return {"status": "run gone"}
    if task in run.done or run.body["phase"] == "done":
        return {"status": "already done"}
    desc = engine.ws.get_json(f"{run_prefix(run_id)}tasks/{task}.json")
    if desc is None:
        return {"status": "task gone"}
    if desc["kind"] == "lake":
        body = _lake_task(engine, run, task, desc, deadline, hook)
    elif desc["kind"] == "quarantine":
        subjects = engine.subjects(run).by_dataset.get(desc["dataset"])
        memo = WorkspaceCheckpoint(engine, run.id, task)
        body = erase_quarantine(engine.cfg.quarantine_bucket, engine.datasets[desc["dataset"]], subjects, memo) \
            if subjects else {"files": [], "rows_removed": 0, "lineage": {}}
    elif desc["kind"] == "raw":
        body = _raw_task(engine, run, task, desc)
    else:
        raise ValueError(f"task {task}: unknown kind {desc['kind']!r}")
    hook(f"task:{desc['kind']}")
    finish(engine, run_id, task, {**desc, **body, "task_id": task})
    return {"status": "done", "kind": desc["kind"], "dataset": desc["dataset"],
            "rows_removed": body.get("rows_removed", 0), "files_rewritten": files_changed(body)}


def files_changed(body: dict[str, Any]) -> int:
    """Files a task replaced: lake and quarantine files rewritten or emptied, raw copies rewritten or deleted."""
    if "copies" in body:
        return sum(1 for c in body["copies"] if c.get("action") != "unchanged")
    return len(body.get("files") or ())


def finish(engine: Engine, run_id: str, task: str, result: dict[str, Any]) -> None:
    """Record the result, add the task to the run's done set, tick the run if the stage is complete."""
    engine.ws.put_json(f"{run_prefix(run_id)}results/{task}.json", result)
    done = engine.store.mark_done(run_id, [task])
    run = engine.store.get_run(run_id)
    info = run.body["stages"].get(task.rsplit(".", 1)[0], {"tasks": []})
    if set(info["tasks"]) <= done:
        engine.ports.send(engine.cfg.run_queue_url, {"action": "advance", "run_id": run_id})


def record_failure(engine: Engine, run_id: str, task: str, reason: str) -> None:
    """Last delivery failed: the task counts as done with its failure, so verification decides the outcome."""
    try:
        run = engine.store.get_run(run_id)
    except NotFound:
        return
    desc = engine.ws.get_json(f"{run_prefix(run_id)}tasks/{task}.json") or {}
    finish(engine, run_id, task, {**desc, "task_id": task, "failed": safe_text(engine, run, reason)[:500]})


def safe_text(engine: Engine, run: Any, text: str) -> str:
    """An error message fit for records and logs: any subject id of the run in it becomes its hash
    (a partition keyed by a subject column would otherwise carry the id in paths)."""
    ids = [i for s in engine.subjects(run).by_dataset.values() for i in s.ids]
    return redact(text, ids, engine.salt)
