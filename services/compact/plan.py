"""What to compact: which files are small, when a partition needs compaction, how files are binned.

Pure functions over the commit manifest (contracts.commits.FileEntry: name, key, rows, bytes), so
every decision is a function of the committed state and a retry plans exactly what the first
attempt planned. A bin is one `replace` op; its op id derives from its input names, so a retried
bin replays instead of committing twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from contracts import lake
from contracts.commits import FileEntry, PartitionRef
from contracts.datasets import Dataset


class Trigger(StrEnum):
    """Why a compaction runs: events need the threshold, the others compact any two small files."""

    EVENT = "event"
    SWEEP = "sweep"
    MANUAL = "manual"
    CONTINUE = "continue"


@dataclass(frozen=True)
class Sizing:
    """A dataset's compaction sizes (from its contract, optionally overridden per environment)."""

    target_bytes: int
    small_bytes: int
    min_files: int

    @classmethod
    def of(cls, dataset: Dataset, min_files: int | None = None) -> Sizing:
        target, storage = dataset.target_file_bytes, dataset.storage
        return cls(target, int(storage.small_file_ratio * target), min_files or storage.compaction_min_files)


@dataclass(frozen=True)
class Bin:
    """Files rewritten together into about one target-sized file, committed by one replace."""

    files: tuple[FileEntry, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def op_id(self, ref: PartitionRef, dataset: Dataset) -> str:
        """Deterministic in the inputs: the same bin always commits under the same op id."""
        digest = hashlib.sha256("\n".join(sorted(self.names)).encode()).hexdigest()[:32]
        path = lake.partition_path(dataset.partition_names, ref.values)
        return f"compact:{ref.dataset}:{path}:{digest}"


def small_files(files: Sequence[FileEntry], sizing: Sizing) -> list[FileEntry]:
    return [f for f in files if f.bytes < sizing.small_bytes]


def threshold_crossed(files: Sequence[FileEntry], sizing: Sizing) -> bool:
    """The contract's trigger: enough small files, or enough small bytes to fill a target file."""
    small = small_files(files, sizing)
    return len(small) >= sizing.min_files or (len(small) >= 2 and sum(f.bytes for f in small) >= sizing.target_bytes)


def needs_compaction(files: Sequence[FileEntry], sizing: Sizing, trigger: Trigger) -> bool:
    if trigger is Trigger.EVENT:
        return threshold_crossed(files, sizing)
    return len(small_files(files, sizing)) >= 2


def plan_bins(files: Sequence[FileEntry], sizing: Sizing, trigger: Trigger) -> list[Bin]:
    """Bins of small files, each at most one target of input bytes, largest files placed first.

    First-fit decreasing keeps bins full (few output files near the target size); a bin with a
    single file would rewrite it for nothing and is dropped. Ties are broken by name, and each
    bin lists its files by name, so the plan is a pure function of the manifest.
    """
    if not needs_compaction(files, sizing, trigger):
        return []
    small = sorted(small_files(files, sizing), key=lambda f: (-f.bytes, f.name))
    bins: list[list[FileEntry]] = []
    room: list[int] = []
    for f in small:
        for i, free in enumerate(room):
            if f.bytes <= free:
                bins[i].append(f)
                room[i] -= f.bytes
                break
        else:
            bins.append([f])
            room.append(sizing.target_bytes - f.bytes)
    out = [Bin(tuple(sorted(b, key=lambda f: f.name))) for b in bins if len(b) >= 2]
    return sorted(out, key=lambda b: b.names)
