"""What one compaction invocation does: check a partition, lease it, rewrite its bins, commit, announce.

The rewrite itself (rewrite.py) works on local files; this module moves files between the lake and
the work directory, commits each bin through contracts.commits and keeps the lease and markers
(state.py). Every step is safe to repeat: plans are functions of the committed manifest and a bin's
op id of its inputs, so a retried message re-plans, and a bin committed before a crash is simply
no longer in the plan.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from contracts import events, lake
from contracts.commits import (
    CleanupReport,
    CommitResult,
    MissingObject,
    NewFile,
    PartitionBusy,
    PartitionCommitter,
    PartitionRef,
    ReplaceConflict,
)
from contracts.datasets import Dataset
from services.compact.commands import CompactPartition
from services.compact.files import LakeFiles
from services.compact.plan import Bin, Sizing, Trigger, needs_compaction, plan_bins, small_files
from services.compact.rewrite import compact_files
from services.compact.runs import InputFile
from services.compact.state import CompactState, Marker

#: re-plans after ReplaceConflict before giving up (the message then retries from scratch)
MAX_CONFLICTS = 5
#: conservative speed of one bin end to end (download, rewrite, upload, commit) and a fixed cost;
#: after the first bin of an invocation, a bin that would not finish before the deadline is left to
#: a follow-up message (the first always runs: a bin is at most one target, sized to fit a timeout)
BIN_BYTES_PER_SECOND = 8 * 1024 * 1024
BIN_FIXED_SECONDS = 5.0


class Outbox(Protocol):
    """Where results go: platform events on the bus, follow-up commands on the service's own queue."""

    def publish(self, details: Sequence[events.EventDetail]) -> None: ...
    def enqueue(self, commands: Sequence[CompactPartition]) -> None: ...


class UnknownDataset(ValueError):
    """The event or command names a dataset this deployment has no contract for."""


def bin_seconds(b: Bin) -> float:
    return BIN_FIXED_SECONDS + b.bytes / BIN_BYTES_PER_SECOND


@dataclass
class Outcome:
    """What a compaction call did (value-free: safe to log)."""

    dataset: str
    partition: dict[str, str]
    status: str  # compacted | below-threshold | busy | continued
    bins: list[events.PartitionCompacted] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        totals = {k: sum(getattr(b, k) for b in self.bins)
                  for k in ("files_before", "files_after", "bytes_before", "bytes_after")}
        return {"dataset": self.dataset, "partition": self.partition, "status": self.status, "bins": len(self.bins),
                **totals}


@dataclass
class Compactor:
    """Compaction of lake partitions against injected backends (AWS in handler.py, fakes in tests)."""

    committer: PartitionCommitter
    files: LakeFiles
    state: CompactState
    outbox: Outbox
    datasets: Mapping[str, Dataset]
    work_root: Path
    min_files: int | None = None
    quiet_seconds: float = 900.0
    lease_margin_seconds: float = 30.0
    threads: int = 1
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    estimate: Callable[[Bin], float] = bin_seconds

    # -- entry points -----------------------------------------------------------------------------
    def files_added(self, detail: events.PartitionFilesAdded, deadline: float) -> Outcome:
        """Remember the partition for the sweep, then compact it if the contract's threshold is crossed."""
        ref = PartitionRef(detail.dataset, detail.partition)
        ds = self._dataset(ref.dataset)
        self.state.mark(ref, self._path(ds, ref), self.clock())
        return self.compact(ref, Trigger.EVENT, deadline)

    def compact(self, ref: PartitionRef, trigger: Trigger, deadline: float) -> Outcome:
        """Compact one partition under its lease until no work is left or time runs out."""
        ds = self._dataset(ref.dataset)
        path, sizing = self._path(ds, ref), Sizing.of(ds, self.min_files)
        outcome = Outcome(ds.name, dict(ref.values), "below-threshold")
        started = self.clock()
        if not needs_compaction(self.committer.current(ref).files, sizing, trigger):
            self._settle_marker(ref, path, sizing, started)
            return outcome
        holder = uuid.uuid4().hex
        if not self.state.acquire(ds.name, path, holder, deadline + self.lease_margin_seconds, started):
            outcome.status = "busy"  # the holder re-plans after each bin and picks up our files
            return outcome
        try:
            outcome.status = self._compact_leased(ref, ds, sizing, trigger, deadline, outcome)
        finally:
            self.state.release(ds.name, path, holder)
        if outcome.status != "continued":
            self._settle_marker(ref, path, sizing, started)
        return outcome

    def sweep(self) -> list[CompactPartition]:
        """Queue a compaction of every quiet partition that still holds two or more small files."""
        now = self.clock()
        commands = []
        for ds in self.datasets.values():
            if not ds.partitioning:
                continue
            sizing = Sizing.of(ds, self.min_files)
            for marker in self.state.markers(ds.name):
                if marker.last_added > now - self.quiet_seconds:
                    continue
                if len(small_files(self.committer.current(marker.ref).files, sizing)) >= 2:
                    commands.append(CompactPartition(dataset=ds.name, partition=dict(marker.ref.values),
                                                     reason=Trigger.SWEEP))
                else:
                    self.state.clear(marker)
        if commands:
            self.outbox.enqueue(commands)
        return commands

    def cleanup(self, deadline: float) -> CleanupReport:
        """Delete replaced generations and stale staged files (every version) once past their grace."""
        return self.committer.cleanup(deadline=deadline)

    # -- one partition ----------------------------------------------------------------------------
    def _compact_leased(
        self, ref: PartitionRef, ds: Dataset, sizing: Sizing, trigger: Trigger, deadline: float, outcome: Outcome
    ) -> str:
        conflicts = 0
        bins = plan_bins(self.committer.current(ref).files, sizing, trigger)
        while bins:
            current = {f.name: f for f in self.committer.current(ref).files}
            b = bins.pop(0)
            if any(n not in current for n in b.names):  # another writer replaced some of them: re-plan
                bins = plan_bins(list(current.values()), sizing, Trigger.CONTINUE)
                continue
            b = Bin(tuple(current[n] for n in b.names))  # keys move with each generation
            # the first bin of an invocation always runs (progress); one after another bin or after a lost
            # race runs only if it fits the time left, else a follow-up message takes it with a fresh timeout
            # (failing the message instead would spend one of its few receives: MAX_RECEIVE_COUNT, then the DLQ)
            if (outcome.bins or conflicts) and self.clock() + self.estimate(b) > deadline:
                return self._continue_later(ds, ref)
            try:
                outcome.bins.append(self._run_bin(ref, ds, b, deadline))
            except (ReplaceConflict, MissingObject):
                # ReplaceConflict: another writer (erasure) replaced some inputs first. MissingObject: our
                # staged files waited at a busy partition for longer than a commit accepts them ("stage it
                # again"). Either way, re-plan from the committed state and stage afresh.
                conflicts += 1
                if conflicts > MAX_CONFLICTS:
                    raise
                bins = plan_bins(self.committer.current(ref).files, sizing, Trigger.CONTINUE)
                continue
            except PartitionBusy:  # held until our deadline (an erasure rewriting it): try again later
                return self._continue_later(ds, ref)
            if not bins:  # this plan is done; go on only if new files crossed the threshold again
                bins = plan_bins(self.committer.current(ref).files, sizing, Trigger.EVENT)
        return "compacted" if outcome.bins else "below-threshold"

    def _continue_later(self, ds: Dataset, ref: PartitionRef) -> str:
        """Leave the rest of the partition to a follow-up message (any two small files, like manual)."""
        self.outbox.enqueue([CompactPartition(dataset=ds.name, partition=dict(ref.values), reason=Trigger.CONTINUE)])
        return "continued"

    def _run_bin(self, ref: PartitionRef, ds: Dataset, b: Bin, deadline: float) -> events.PartitionCompacted:
        """Download, rewrite, stage and commit one bin; the op id makes a retry a replay."""
        start = self.clock()
        op_id = b.op_id(ref, ds)
        self.work_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="compact-", dir=self.work_root))
        try:
            paths = [work / f"in-{i:05d}.parquet" for i in range(len(b.files))]
            self.files.download([f.key for f in b.files], paths)
            rewrite = compact_files([InputFile(p, f.rows) for p, f in zip(paths, b.files, strict=True)], ds, work,
                                    threads=self.threads)
            staged = []
            for i, out in enumerate(rewrite.outputs):
                name = f"compact-{i:04d}.parquet"
                key = self.committer.reserve_staging(ref, op_id, name)
                self.files.upload(out.path, key)
                staged.append(NewFile(name, key, out.rows))
            result = self._replace(ref, b, staged, op_id, deadline)
            bytes_after = sum(o.bytes for o in rewrite.outputs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        compacted = events.PartitionCompacted(
            dataset=ds.name, partition=dict(ref.values), generation=result.generation, files_before=len(b.files),
            files_after=len(staged), bytes_before=b.bytes, bytes_after=bytes_after, rows=rewrite.rows,
            duration_ms=int((self.clock() - start) * 1000),
        )
        self.outbox.publish([compacted])
        return compacted

    def _replace(self, ref: PartitionRef, b: Bin, staged: list[NewFile], op_id: str, deadline: float) -> CommitResult:
        """Commit the bin; an append holding the partition only delays us (same op id, same files)."""
        while True:
            try:
                return self.committer.replace(ref, remove=b.names, add=staged, op_id=op_id, deadline=deadline)
            except PartitionBusy:
                if self.clock() + 1.0 >= deadline:
                    raise
                self.sleep(1.0)

    def _settle_marker(self, ref: PartitionRef, path: str, sizing: Sizing, started: float) -> None:
        """Forget the partition for the sweep once at most one small file is left (and none came since)."""
        if len(small_files(self.committer.current(ref).files, sizing)) <= 1:
            self.state.clear(Marker(ref, path, started))

    def _dataset(self, name: str) -> Dataset:
        ds = self.datasets.get(name)
        if ds is None:
            raise UnknownDataset(f"dataset {name!r} has no contract in this deployment")
        if not ds.partitioning:
            raise UnknownDataset(f"dataset {name!r} is not partitioned: commits and compaction work on partitions")
        return ds

    @staticmethod
    def _path(ds: Dataset, ref: PartitionRef) -> str:
        return lake.partition_path(ds.partition_names, ref.values)
