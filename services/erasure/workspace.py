"""JSON documents of runs and certificates in the erasure bucket, and the keys and ids that name them.

`runs/<run id>/…` holds a run's plan, checkpoints and task results (lineage: object ids and line
numbers of erased rows, never values); the run deletes it when it ends (lifecycle expiry is the
backstop). `certificates/<request id>.json|.md` are kept.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from contracts import aws
from services.erasure.lake import Checkpoint
from services.erasure.runstate import TASK, LakeTask, QuarantineTask, RawTask, RunState, Stage, TaskResult


class Workspace:
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def put_json(self, key: str, data: Any) -> None:
        body = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def put_text(self, key: str, text: str, content_type: str) -> None:
        aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=text.encode(), ContentType=content_type)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return aws.client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def get_json(self, key: str) -> Any:
        data = self.get_bytes(key)
        return None if data is None else json.loads(data)

    def keys(self, prefix: str) -> list[str]:
        out = []
        for page in aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def delete_prefix(self, prefix: str) -> int:
        """Delete every version under the prefix (the bucket is unversioned; versions are listed anyway)."""
        s3 = aws.client("s3")
        found = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            found += [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        for i in range(0, len(found), 1000):
            s3.delete_objects(Bucket=self.bucket, Delete={"Objects": found[i : i + 1000], "Quiet": True})
        return len(found)


# -- keys and ids: the only place that spells them ----------------------------------------------------
def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def certificate_key(request_id: str, ext: str) -> str:
    return f"certificates/{request_id}.{ext}"


def stage_key(attempt: int, stage: str) -> str:
    """A stage of one attempt, as the run record's `stages` names it: `<attempt>.<stage>`."""
    return f"{attempt}.{stage}"


def task_id(attempt: int, stage: str, n: int) -> str:
    """`<attempt>.<stage>.<n>`: unique in the run, sortable, and naming its stage (`stage_of`)."""
    return f"{stage_key(attempt, stage)}.{n:05d}"


def stage_of(task: str) -> str:
    """The stage key of a task id (`task_id`'s inverse, less the number)."""
    return task.rsplit(".", 1)[0]


class RunWorkspace:
    """One run's documents: task descriptors, results, checkpoints, FIND plans and verification reports."""

    def __init__(self, workspace: Workspace, run_id: str) -> None:
        self.ws, self.run_id, self.prefix = workspace, run_id, run_prefix(run_id)

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}.json"

    def put_task(self, task_id: str, task: LakeTask | QuarantineTask | RawTask) -> None:
        self.ws.put_json(self._key(f"tasks/{task_id}"), task.to_json())

    def task(self, task_id: str) -> LakeTask | QuarantineTask | RawTask | None:
        doc = self.ws.get_json(self._key(f"tasks/{task_id}"))
        return None if doc is None else TASK.validate_python(doc)

    def put_result(self, result: TaskResult) -> None:
        self.ws.put_json(self._key(f"results/{result.task_id}"), result.to_json())

    def result(self, task_id: str) -> TaskResult | None:
        doc = self.ws.get_json(self._key(f"results/{task_id}"))
        return None if doc is None else TaskResult.model_validate(doc)

    def results(self, run: RunState, stage: Stage, attempt: int | None = None) -> list[TaskResult]:
        """The results of one stage's finished tasks (of the run's current attempt by default)."""
        info = run.stages.get(stage_key(run.attempt if attempt is None else attempt, stage))
        found = (self.result(t) for t in (info.tasks if info else []))
        return [r for r in found if r is not None]

    def all_results(self, run: RunState, stage: Stage) -> list[TaskResult]:
        """The results of one stage over every attempt so far."""
        return [r for a in range(1, run.attempt + 1) for r in self.results(run, stage, a)]

    def checkpoint(self, name: str) -> WorkspaceCheckpoint:
        """Where a task (or one raw copy of it: `<task id>.<n>`) keeps its progress."""
        return WorkspaceCheckpoint(self.ws, self._key(f"checkpoints/{name}"))

    def find_key(self, attempt: int) -> str:
        return self._key(f"find-{attempt}")

    def verify_key(self, attempt: int) -> str:
        return self._key(f"verify-{attempt}")

    def verify_lake_key(self, attempt: int) -> str:
        return self._key(f"verify-lake-{attempt}")

    def get(self, key: str) -> Any:
        return self.ws.get_json(key)

    def put(self, key: str, doc: Any) -> None:
        self.ws.put_json(key, doc)

    def delete(self) -> int:
        return self.ws.delete_prefix(self.prefix)


class WorkspaceCheckpoint(Checkpoint):
    def __init__(self, workspace: Workspace, key: str) -> None:
        self.ws, self.key = workspace, key

    def load(self) -> dict[str, Any] | None:
        doc = self.ws.get_json(self.key)
        return doc if isinstance(doc, dict) else None

    def save(self, data: dict[str, Any]) -> None:
        self.ws.put_json(self.key, data)
