"""What a run persists, typed: the run record, its task descriptors and the tasks' results.

The run record is the JSON `body` of `run#<id>` in the erasure table; descriptors and results are
JSON documents in the run's workspace (workspace.py owns their keys). Field names and shapes are
the ones earlier versions wrote, so a run stored before these models existed is read as it is;
fields a model does not name (an outcome's `op_id`, `find`, `replayed`, a newer version's
additions) are kept through a read-modify-write (`extra="allow"`), never dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Phase = Literal["find", "lake", "raw", "purge", "verify", "done"]
PHASES: tuple[Phase, ...] = ("find", "lake", "raw", "purge", "verify", "done")
#: the phases that fan out to worker tasks, one stage each
Stage = Literal["lake", "raw"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict[str, Any]:
        """The stored shape: absent optional fields stay absent (as earlier versions wrote them)."""
        return self.model_dump(mode="json", exclude_none=True)


class StageTasks(_Doc):
    """The task ids of one stage of one attempt, and whether their messages went out.

    `groups` are the task ids each message carries (engine.message_groups): several partitions of one
    dataset in one worker invocation. A stage staged before groups existed has none: one message a task.
    """

    tasks: list[str]
    sent: bool = False
    groups: list[list[str]] | None = None


class Committed(_Doc):
    """A partition commit an erasure task made: its old generations are purged after the grace."""

    dataset: str
    partition: dict[str, str]
    generation: int
    committed_at: float
    attempt: int
    purged: bool = False


class FindSummary(_Doc):
    stats: dict[str, dict[str, Any]]
    pruned: int
    partitions_with_hits: int


class Verdict(_Doc):
    attempt: int
    passed_all: bool
    at: float


class PhaseEntered(_Doc):
    at: float
    phase: str


class RunState(_Doc):
    """A run's plan and progress (the `done` fan-in set is a string set beside it, store.py)."""

    created_at: float
    phase: Phase
    attempt: int = 1
    trigger: str = "batch"
    requests: list[str]
    #: "<attempt>.<stage>" (workspace.stage_key) → its tasks
    stages: dict[str, StageTasks] = Field(default_factory=dict)
    committed: list[Committed] = Field(default_factory=list)
    history: list[PhaseEntered] = Field(default_factory=list)
    #: dataset → raw object id → line numbers of erased rows (from the lake and quarantine tasks)
    lineage: dict[str, dict[str, list[int]]] = Field(default_factory=dict)
    #: attempt (as a string) → what FIND read
    find: dict[str, FindSummary] = Field(default_factory=dict)
    purge_due: float | None = None
    #: while the purge waits for staged copies of unfinished commits: since when
    in_flight_since: float | None = None
    old_generation_versions_deleted: int = 0
    hidden_deleted: dict[str, int] = Field(default_factory=dict)
    verifications: list[Verdict] = Field(default_factory=list)


# -- tasks ------------------------------------------------------------------------------------------
class _Task(_Doc):
    dataset: str
    stage: Stage
    attempt: int


class LakeTask(_Task):
    """Erase a partition's files holding a subject, in one commit.

    FIND hands over what it found: the names of the files holding a subject (`hits`) in the manifest
    version it read (`version`). A task finding its partition still at that version probes only those
    files; otherwise (or in a descriptor without them) it probes the partition again.
    """

    kind: Literal["lake"] = "lake"
    values: dict[str, str]
    location: str
    version: int | None = None
    hits: list[str] | None = None


class QuarantineTask(_Task):
    """Erase a dataset's quarantined rows of the run's subjects."""

    kind: Literal["quarantine"] = "quarantine"


class RawTask(_Task):
    """Blank the erased rows' lines in every raw copy of one landed object (found through lineage)."""

    kind: Literal["raw"] = "raw"
    object_id: str


Task = Annotated[LakeTask | QuarantineTask | RawTask, Field(discriminator="kind")]
TASK: TypeAdapter[LakeTask | QuarantineTask | RawTask] = TypeAdapter(Task)


class TaskResult(_Doc):
    """A finished task: its descriptor, its outcome and, when its last delivery failed, why.

    One flat shape for the three kinds, as stored: `files` (lake: file outcomes of lake.py;
    quarantine: of copies.py) and `copies` (raw: one entry per raw copy, copies.py) stay the
    dictionaries those modules return, which the certificate publishes field by field.
    """

    task_id: str
    kind: str = ""
    dataset: str = ""
    stage: str = ""
    attempt: int = 0
    failed: str | None = None
    rows_removed: int = 0
    files: list[dict[str, Any]] = Field(default_factory=list)
    #: subject hash → rows removed
    by_subject: dict[str, int] = Field(default_factory=dict)
    lineage: dict[str, list[int]] = Field(default_factory=dict)
    # lake
    partition: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    committed_at: float | None = None
    fingerprints: list[str] = Field(default_factory=list)
    # raw
    object_id: str | None = None
    lines: list[int] = Field(default_factory=list)
    copies: list[dict[str, Any]] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As the task wrote it: the fields its kind produced, no empty defaults of the other kinds."""
        return self.model_dump(mode="json", exclude_unset=True)

    @property
    def ok(self) -> bool:
        return not self.failed

    def files_changed(self) -> int:
        """Files the task replaced: lake and quarantine files rewritten or emptied, raw copies rewritten or deleted."""
        if self.kind == "raw":
            return sum(1 for c in self.copies if c.get("action") != "unchanged")
        return len(self.files)
