"""The typed run state reads what earlier versions stored, and writes it back in the same shape."""

from __future__ import annotations

import json

from services.erasure.runstate import TASK, LakeTask, RawTask, RunState, TaskResult
from services.erasure.workspace import stage_key, stage_of, task_id

#: a run body as the untyped engine wrote it (in purge, second attempt, one key this version does not know)
OLD_BODY = {
    "created_at": 1714550400.5, "phase": "purge", "attempt": 2, "trigger": "demand",
    "requests": ["er-20240501000000-0a1b2c3d4e"],
    "stages": {"1.lake": {"tasks": ["1.lake.00000", "1.lake.00001"], "sent": True},
               "1.raw": {"tasks": ["1.raw.00000"], "sent": True}},
    "committed": [{"dataset": "orders", "partition": {"order_year": "2024", "order_month": "05"},
                   "generation": 3, "committed_at": 1714550500.25, "attempt": 1, "purged": True}],
    "history": [{"at": 1714550400.5, "phase": "find"}, {"at": 1714550450, "phase": "lake"}],
    "lineage": {"orders": {"abc": [1, 4]}},
    "find": {"1": {"stats": {"orders": {"files_considered": 4}}, "pruned": 2, "partitions_with_hits": 1}},
    "purge_due": 1714552300.25, "old_generation_versions_deleted": 5, "hidden_deleted": {"staging": 1},
    "verifications": [{"attempt": 1, "passed_all": False, "at": 1714550600}],
    "added_by_a_newer_version": {"kept": True},
}


def test_an_old_run_body_reads_and_writes_back_unchanged() -> None:
    state = RunState.model_validate_json(json.dumps(OLD_BODY))
    assert state.phase == "purge" and state.attempt == 2 and state.committed[0].generation == 3
    assert state.stages["1.lake"].tasks == ["1.lake.00000", "1.lake.00001"] and state.in_flight_since is None
    assert state.to_json() == OLD_BODY, "same names, same shape, unknown fields kept"


def test_a_fresh_run_omits_what_is_not_set() -> None:
    state = RunState(created_at=1.0, phase="find", requests=["r"])
    assert "purge_due" not in state.to_json() and "in_flight_since" not in state.to_json()


def test_task_descriptors_and_results_keep_their_stored_shape() -> None:
    stored = {"kind": "lake", "dataset": "orders", "values": {"order_year": "2024"}, "location": "s3://l/x/",
              "stage": "lake", "attempt": 1}
    task = TASK.validate_python(stored)
    assert isinstance(task, LakeTask) and task.to_json() == stored
    raw = TASK.validate_python({"kind": "raw", "dataset": "orders", "object_id": "abc", "stage": "raw", "attempt": 2})
    assert isinstance(raw, RawTask) and raw.object_id == "abc"
    result = {**stored, "task_id": "1.lake.00000", "op_id": "erasure:x", "generation": 4, "committed_at": 2.5,
              "files": [{"key": "k", "new_key": "n"}], "rows_removed": 3, "by_subject": {"h": 3},
              "lineage": {"abc": [1]}, "fingerprints": [], "partition": {"order_year": "2024"}, "replayed": False,
              "find": {"files_scanned": 1}}
    parsed = TaskResult.model_validate(result)
    assert parsed.ok and parsed.files_changed() == 1 and parsed.to_json() == result
    failed = TaskResult.model_validate({**stored, "task_id": "1.lake.00001", "failed": "PartitionBusy: ..."})
    assert not failed.ok and failed.to_json()["failed"] == "PartitionBusy: ..."


def test_task_ids_name_their_stage() -> None:
    tid = task_id(2, "raw", 7)
    assert tid == "2.raw.00007" and stage_of(tid) == stage_key(2, "raw") == "2.raw"
