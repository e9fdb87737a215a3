"""The public values of partition commits: what callers pass in and get back, and the timing settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class PartitionRef:
    """One Hive partition of a dataset: values by partition key name (strings, as Glue holds them)."""

    dataset: str
    values: Mapping[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    def __hash__(self) -> int:
        return hash((self.dataset, tuple(sorted(self.values.items()))))

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "values": dict(self.values)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartitionRef:
        return cls(data["dataset"], data["values"])


@dataclass(frozen=True)
class NewFile:
    """A file a writer staged (via `stage` or `reserve_staging`) for a commit; `name` is only a label."""

    name: str
    staged_key: str
    rows: int


@dataclass(frozen=True)
class FileToStage:
    """Bytes to stage for one partition's commit (see `PartitionCommitter.stage_many`)."""

    ref: PartitionRef
    op_id: str
    name: str
    data: bytes
    rows: int


@dataclass(frozen=True)
class Append:
    """One partition's part of a batched append (see `PartitionCommitter.append_many`)."""

    ref: PartitionRef
    files: tuple[NewFile, ...]
    op_id: str


@dataclass(frozen=True)
class FileEntry:
    """A committed file: `name` is what `replace(remove=...)` takes, `key` is where it is now."""

    name: str
    key: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class PartitionState:
    """The committed manifest. While `pending_op` is set, readers may already see that op's effect."""

    ref: PartitionRef
    generation: int
    location: str | None
    files: tuple[FileEntry, ...]
    version: int
    pending_op: str | None

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


@dataclass(frozen=True)
class CommitResult:
    """What a commit did; `replayed` means this call found the op already committed."""

    op_id: str
    generation: int
    location: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "op_id": self.op_id,
            "generation": self.generation,
            "location": self.location,
            "added": list(self.added),
            "removed": list(self.removed),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], replayed: bool) -> CommitResult:
        return cls(
            data["op_id"], data["generation"], data["location"], tuple(data["added"]), tuple(data["removed"]), replayed
        )


@dataclass
class CleanupReport:
    """What one cleanup run did; `overdue` counts deletions later than the erasure window allows."""

    entries: int = 0
    objects_deleted: int = 0
    postponed: int = 0
    overdue: int = 0
    max_lag_seconds: float = 0.0
    complete: bool = True


@dataclass(frozen=True)
class CommitSettings:
    """Timing of commits; every safety argument rests on the inequalities checked here.

    - `max_op_seconds`: no attempt runs longer (Lambda's hard timeout; 900 s is Lambda's maximum).
    - `clock_margin_seconds`: covers clock skew and a request landing after it was sent.
    - `grace_seconds`: replaced and staged files live this long; must outlast queries (Athena's DML
      timeout is 30 min by default) and two attempts (a staged file may be reserved one attempt
      before it is committed), and stay far below the erasure window.
    """

    grace_seconds: float = 4 * 3600
    erasure_window_seconds: float = 30 * 86400
    max_op_seconds: float = 900
    clock_margin_seconds: float = 30
    op_record_ttl_seconds: float = 35 * 86400
    busy_wait_seconds: float = 20

    def __post_init__(self) -> None:
        if self.grace_seconds <= 2 * self.max_op_seconds + self.clock_margin_seconds:
            raise ValueError("grace_seconds must exceed 2 * max_op_seconds + clock_margin_seconds")
        if self.grace_seconds >= self.erasure_window_seconds:
            raise ValueError("grace_seconds must be shorter than erasure_window_seconds")
        if self.op_record_ttl_seconds <= self.grace_seconds:
            raise ValueError("op_record_ttl_seconds must exceed grace_seconds")


@dataclass(frozen=True)
class ObjectStat:
    size: int
    modified: float
