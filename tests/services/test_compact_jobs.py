"""The compaction service against in-memory lake, state table and catalog (the real commit protocol).

Triggers, lease, sweep, cleanup after the grace period, duplicate delivery, crash between staging and
commit, appends landing while a compaction runs, and a partition split over several invocations.
"""

from __future__ import annotations

import datetime as dt
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import events
from contracts.arrow import lake_schema
from contracts.commits import (
    CommitSettings,
    PartitionBusy,
    PartitionCommitter,
    PartitionRef,
    ReplaceConflict,
)
from contracts.datasets import load_datasets
from services.compact.commands import CompactPartition
from services.compact.jobs import Compactor, UnknownDataset
from services.compact.plan import Trigger
from services.compact.state import Marker
from services.transform.parquet import parquet_bytes
from tests.fakes.commit_backends import FakeClock, MemCatalog, MemStore, MemTable

DATASETS = load_datasets()
ORDERS = DATASETS["orders"]
REF = PartitionRef("orders", {"order_year": "2024", "order_month": "05"})
PATH = "order_year=2024/order_month=05"
SETTINGS = CommitSettings(grace_seconds=3600, max_op_seconds=60, clock_margin_seconds=5)


# -- in-memory compaction backends (the commit backends are tests/fakes/commit_backends.py) ---------
class MemFiles:
    def __init__(self, store: MemStore) -> None:
        self.store = store

    def download(self, keys: Sequence[str], paths: Sequence[Path]) -> None:
        for key, path in zip(keys, paths, strict=True):
            path.write_bytes(self.store.get(key))

    def upload(self, path: Path, key: str) -> None:
        self.store.put(key, path.read_bytes())


class MemState:
    """Leases and markers with DynamoDB's conditions."""

    def __init__(self) -> None:
        self.leases: dict[str, tuple[str, float]] = {}
        self.marks: dict[tuple[str, str], Marker] = {}

    def acquire(self, dataset: str, path: str, holder: str, until: float, now: float) -> bool:
        have = self.leases.get(f"{dataset}#{path}")
        if have and have[0] != holder and have[1] >= now:
            return False
        self.leases[f"{dataset}#{path}"] = (holder, until)
        return True

    def release(self, dataset: str, path: str, holder: str) -> None:
        if self.leases.get(f"{dataset}#{path}", ("",))[0] == holder:
            del self.leases[f"{dataset}#{path}"]

    def mark(self, ref: PartitionRef, path: str, now: float) -> None:
        self.marks[(ref.dataset, path)] = Marker(ref, path, now)

    def markers(self, dataset: str) -> list[Marker]:
        return [m for (d, _), m in self.marks.items() if d == dataset]

    def clear(self, marker: Marker) -> bool:
        have = self.marks.get((marker.ref.dataset, marker.path))
        if have is None or have.last_added > marker.last_added:
            return False
        del self.marks[(marker.ref.dataset, marker.path)]
        return True


@dataclass
class Outbox:
    published: list[events.EventDetail] = field(default_factory=list)
    queued: list[CompactPartition] = field(default_factory=list)

    def publish(self, details: Sequence[events.EventDetail]) -> None:
        for d in details:
            events.parse_event({"source": d.SOURCE, "detail-type": d.DETAIL_TYPE,
                                "detail": d.model_dump(mode="json")})  # every event matches its contract
        self.published.extend(details)

    def enqueue(self, commands: Sequence[CompactPartition]) -> None:
        self.queued.extend(commands)


class World:
    def __init__(self, tmp: Path) -> None:
        self.clock = FakeClock()
        self.store = MemStore(self.clock)
        self.table = MemTable()
        self.catalog = MemCatalog()
        self.committer = PartitionCommitter(bucket="lake", store=self.store, table=self.table, catalog=self.catalog,
                                            clock=self.clock, datasets=DATASETS, settings=SETTINGS)
        self.files = MemFiles(self.store)
        self.state = MemState()
        self.outbox = Outbox()
        self.compactor = Compactor(
            committer=self.committer, files=self.files, state=self.state, outbox=self.outbox, datasets=DATASETS,
            work_root=tmp / "work", quiet_seconds=600, lease_margin_seconds=5, clock=self.clock.now,
            sleep=self.clock.sleep,
        )
        self.landed: list[tuple[str, int]] = []  # (object id, line) of every row appended
        self.objects = 0

    @property
    def deadline(self) -> float:
        return self.clock.now() + 50

    def land(self, rows: int = 50) -> events.PartitionFilesAdded:
        """What transform does for one object: a sorted file with lineage, staged and appended."""
        self.objects += 1
        oid = f"obj{self.objects:05d}"
        rnd = random.Random(self.objects)
        table = pa.table({
            "order_id": pa.array([self.objects * 1000 + i for i in range(rows)], pa.int64()),
            "customer_id": pa.array([rnd.randrange(100) for _ in range(rows)], pa.int64()),
            "amount": pa.array(["12.50"] * rows).cast(pa.decimal128(12, 2)),
            "status": pa.array(["paid"] * rows),
            "order_date": pa.array([dt.date(2024, 5, 1 + rnd.randrange(30)) for _ in range(rows)], pa.date32()),
            "_source_object_id": pa.array([oid] * rows),
            "_source_line": pa.array(range(1, rows + 1), pa.int64()),
        }).cast(lake_schema(ORDERS)).sort_by([("order_date", "ascending"), ("order_id", "ascending")])
        data = parquet_bytes(table, ORDERS)
        op = f"transform:{oid}:0:{PATH}"
        staged = self.committer.stage(REF, op, f"{oid}.parquet", data, rows)
        res = self.committer.append(REF, [staged], op)
        self.landed += [(oid, line) for line in range(1, rows + 1)]
        return events.PartitionFilesAdded(dataset="orders", partition=dict(REF.values), generation=res.generation,
                                          files=[f"{oid}.parquet"], rows=rows, bytes=len(data), object_id=oid)

    def visible(self) -> list[tuple[str, int]]:
        """What a reader sees: the files under the catalog's location, nothing else."""
        location = self.catalog.location(ORDERS, ("2024", "05"))
        assert location is not None
        prefix = location.removeprefix("s3://lake/")
        rows: list[tuple[str, int]] = []
        for key in sorted(k for k in self.store.versions if k.startswith(prefix) and "/" not in k[len(prefix):]):
            t = pq.read_table(io.BytesIO(self.store.get(key)))
            rows += zip(t.column("_source_object_id").to_pylist(), t.column("_source_line").to_pylist(), strict=True)
        return rows

    def check_every_row_once(self) -> None:
        seen = self.visible()
        assert len(seen) == len(set(seen)), "a row is visible twice"
        assert sorted(seen) == sorted(self.landed), "a row is missing"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def files_now(w: World) -> int:
    return len(w.committer.current(REF).files)


# -- triggers ---------------------------------------------------------------------------------------
def test_below_the_threshold_nothing_is_rewritten_but_the_partition_is_remembered(world: World) -> None:
    for _ in range(15):
        out = world.compactor.files_added(world.land(), world.deadline)
    assert out.status == "below-threshold" and files_now(world) == 15
    assert [m.path for m in world.state.markers("orders")] == [PATH]
    assert world.outbox.published == []


def test_crossing_the_threshold_compacts_the_partition_into_one_sorted_file(world: World) -> None:
    for _ in range(16):
        out = world.compactor.files_added(world.land(), world.deadline)
    assert out.status == "compacted" and files_now(world) == 1
    world.check_every_row_once()
    (done,) = world.outbox.published
    assert isinstance(done, events.PartitionCompacted)
    assert (done.files_before, done.files_after, done.rows) == (16, 1, 16 * 50)
    assert done.generation == world.committer.current(REF).generation
    assert world.state.leases == {}, "lease released"
    assert world.state.markers("orders") == [], "nothing left for the sweep"
    (entry,) = world.committer.current(REF).files
    table = pq.read_table(io.BytesIO(world.store.get(entry.key)))
    keys = list(zip(table.column("order_date").to_pylist(), table.column("order_id").to_pylist(), strict=True))
    assert keys == sorted(keys)


def test_duplicate_delivery_does_not_compact_twice(world: World) -> None:
    added = [world.land() for _ in range(16)]
    for detail in added + added:
        world.compactor.files_added(detail, world.deadline)
    assert files_now(world) == 1 and len(world.outbox.published) == 1
    world.check_every_row_once()


def test_a_partition_with_a_compaction_in_flight_is_left_to_it(world: World) -> None:
    for _ in range(16):
        world.land()
    assert world.state.acquire("orders", PATH, "someone-else", world.clock.now() + 100, world.clock.now())
    out = world.compactor.compact(REF, Trigger.EVENT, world.deadline)
    assert out.status == "busy" and files_now(world) == 16
    world.clock.t += 101  # the other holder died: its lease expires with its deadline
    assert world.compactor.compact(REF, Trigger.EVENT, world.deadline).status == "compacted"


def test_unknown_or_unpartitioned_datasets_fail_loudly(world: World) -> None:
    with pytest.raises(UnknownDataset):
        world.compactor.compact(PartitionRef("nope", {"a": "1"}), Trigger.MANUAL, world.deadline)


# -- concurrency, crashes, big partitions ------------------------------------------------------------
class AppendDuringReplace:
    """Wraps the committer: before the first replace commits, another writer appends a file."""

    def __init__(self, world: World) -> None:
        self.world, self.inner, self.fired = world, world.committer, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def replace(self, *args: Any, **kwargs: Any) -> Any:
        if not self.fired:
            self.fired = True
            self.world.land()
            self.world.check_every_row_once()
        return self.inner.replace(*args, **kwargs)


def test_files_appended_while_compacting_are_neither_lost_nor_doubled(world: World) -> None:
    for _ in range(16):
        world.land()
    world.compactor.committer = AppendDuringReplace(world)  # type: ignore[assignment]
    world.compactor.compact(REF, Trigger.EVENT, world.deadline)
    world.check_every_row_once()
    assert files_now(world) == 2, "the compacted file and the late append"


class ConflictOnce(AppendDuringReplace):
    """Another replace won first: the bin's inputs are stale once (as the protocol reports it)."""

    def replace(self, *args: Any, **kwargs: Any) -> Any:
        if not self.fired:
            self.fired = True
            raise ReplaceConflict("inputs no longer current")
        return self.inner.replace(*args, **kwargs)


def test_a_replace_conflict_re_plans_from_the_committed_state(world: World) -> None:
    for _ in range(16):
        world.land()
    world.compactor.committer = ConflictOnce(world)  # type: ignore[assignment]
    out = world.compactor.compact(REF, Trigger.EVENT, world.deadline)
    assert out.status == "compacted" and files_now(world) == 1
    world.check_every_row_once()


class EraseDuringReplace(AppendDuringReplace):
    """Erasure wins the race: it replaces one of the bin's files by a copy without one row."""

    def replace(self, ref: PartitionRef, remove: Sequence[str], add: Sequence[Any], op_id: str, **kw: Any) -> Any:
        if not self.fired:
            self.fired = True
            victim = next(f for f in self.inner.current(REF).files if f.name == remove[0])
            table = pq.read_table(io.BytesIO(self.world.store.get(victim.key)))
            erased = (table.column("_source_object_id")[0].as_py(), table.column("_source_line")[0].as_py())
            kept = table.slice(1)
            staged = self.inner.stage(REF, "erase:1", "erased.parquet", parquet_bytes(kept, ORDERS), kept.num_rows)
            self.inner.replace(REF, remove=[victim.name], add=[staged], op_id="erase:1")
            self.world.landed.remove(erased)
        return self.inner.replace(ref, remove=remove, add=add, op_id=op_id, **kw)


def test_a_bin_made_stale_by_another_replace_is_refused_and_re_planned(world: World) -> None:
    for _ in range(16):
        world.land()
    world.compactor.committer = EraseDuringReplace(world)  # type: ignore[assignment]
    out = world.compactor.compact(REF, Trigger.EVENT, world.deadline)
    world.check_every_row_once()  # the erased row stays erased, the others are there once
    assert out.status == "compacted" and len(out.bins) == 1 and out.bins[0].files_before == 16, "re-planned"


class SlowAtTheClaim(AppendDuringReplace):
    """The first replace finds the partition held for longer than a staged file may wait to be committed."""

    def replace(self, *args: Any, **kwargs: Any) -> Any:
        if not self.fired:
            self.fired = True
            self.world.clock.t += SETTINGS.grace_seconds - 2 * SETTINGS.max_op_seconds  # past the staging age
        return self.inner.replace(*args, **kwargs)


def test_staged_files_too_old_to_commit_are_staged_again_in_the_same_invocation(world: World) -> None:
    for _ in range(16):
        world.land()
    world.compactor.committer = SlowAtTheClaim(world)  # type: ignore[assignment]
    out = world.compactor.compact(REF, Trigger.MANUAL, world.clock.now() + 2 * SETTINGS.grace_seconds)
    assert out.status == "compacted" and files_now(world) == 1 and not world.outbox.queued
    assert len(world.outbox.published) == 1
    world.check_every_row_once()


class HeldPastTheDeadline(AppendDuringReplace):
    """Another writer holds the partition (PartitionBusy, as the committer says) until `until`."""

    def __init__(self, world: World, until: float) -> None:
        super().__init__(world)
        self.until = until

    def replace(self, *args: Any, **kwargs: Any) -> Any:
        if self.world.clock.now() < self.until:
            raise PartitionBusy("held by erase:1")
        return self.inner.replace(*args, **kwargs)


def test_a_partition_held_until_the_deadline_is_compacted_by_a_follow_up_message(world: World) -> None:
    for _ in range(16):
        world.land()
    deadline = world.deadline
    world.compactor.committer = HeldPastTheDeadline(world, until=deadline + 5)  # type: ignore[assignment]
    out = world.compactor.compact(REF, Trigger.MANUAL, deadline)  # no exception: the message is not failed
    assert out.status == "continued" and not out.bins and files_now(world) == 16
    assert world.outbox.queued == [CompactPartition(dataset="orders", partition=dict(REF.values),
                                                    reason=Trigger.CONTINUE)]
    assert world.state.leases == {}
    world.clock.t += 10  # the follow-up is received after the other writer let go
    cmd = world.outbox.queued.pop()
    assert world.compactor.compact(REF, cmd.reason, world.deadline).status == "compacted"
    assert files_now(world) == 1
    world.check_every_row_once()


def test_a_lost_race_with_no_time_left_re_plans_in_a_follow_up_message(world: World) -> None:
    for _ in range(16):
        world.land()
    world.compactor.committer = ConflictOnce(world)  # type: ignore[assignment]
    world.compactor.estimate = lambda b: 10_000.0
    out = world.compactor.compact(REF, Trigger.MANUAL, world.deadline)
    assert out.status == "continued" and not out.bins and len(world.outbox.queued) == 1
    world.compactor.committer = world.committer
    cmd = world.outbox.queued.pop()
    assert world.compactor.compact(REF, cmd.reason, world.deadline).status == "compacted"
    world.check_every_row_once()


class Crash(BaseException):
    """Stands for the process dying (not an Exception: nothing may catch it)."""


class CrashBeforeCommit(AppendDuringReplace):
    def replace(self, *args: Any, **kwargs: Any) -> Any:
        raise Crash


def test_a_crash_between_staging_and_committing_is_completed_by_the_retry(world: World) -> None:
    for _ in range(16):
        world.land()
    world.compactor.committer = CrashBeforeCommit(world)  # type: ignore[assignment]
    with pytest.raises(Crash):
        world.compactor.compact(REF, Trigger.EVENT, world.deadline)
    world.check_every_row_once()  # staged files are invisible
    assert files_now(world) == 16
    world.clock.t += 60  # the dead attempt's lease expires; SQS redelivers the message
    world.compactor.committer = world.committer
    assert world.compactor.compact(REF, Trigger.EVENT, world.deadline).status == "compacted"
    world.check_every_row_once()
    assert files_now(world) == 1


def test_a_retry_after_the_commit_finds_nothing_left_to_do(world: World) -> None:
    for _ in range(16):
        world.land()
    world.compactor.compact(REF, Trigger.EVENT, world.deadline)
    again = world.compactor.compact(REF, Trigger.MANUAL, world.deadline)
    assert again.status == "below-threshold" and len(world.outbox.published) == 1


def test_work_that_does_not_fit_the_invocation_continues_in_a_follow_up_message(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(12):
        world.land(rows=400)
    sizes = [f.bytes for f in world.committer.current(REF).files]
    from services.compact import jobs

    monkeypatch.setattr(jobs.Sizing, "of", classmethod(
        lambda cls, ds, min_files=None: cls(sum(sizes) // 3, sum(sizes), 16)))
    world.compactor.estimate = lambda b: 10_000.0
    out = world.compactor.compact(REF, Trigger.MANUAL, world.deadline)
    assert out.status == "continued" and len(out.bins) == 1, "the first bin always runs: progress is guaranteed"
    assert world.outbox.queued == [CompactPartition(dataset="orders", partition=dict(REF.values),
                                                    reason=Trigger.CONTINUE)]
    assert world.state.leases == {}
    while world.outbox.queued:  # what SQS does with the follow-ups
        cmd = world.outbox.queued.pop()
        world.compactor.compact(PartitionRef(cmd.dataset, cmd.partition), cmd.reason, world.deadline)
    assert len(world.outbox.published) >= 3
    world.check_every_row_once()


def test_a_partition_bigger_than_one_target_is_split_into_bins(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(12):
        world.land(rows=400)
    sizes = [f.bytes for f in world.committer.current(REF).files]
    from services.compact import jobs

    monkeypatch.setattr(jobs.Sizing, "of", classmethod(
        lambda cls, ds, min_files=None: cls(sum(sizes) // 3, sum(sizes), 16)))
    out = world.compactor.compact(REF, Trigger.MANUAL, world.deadline)
    assert len(out.bins) >= 3, "each bin is its own replace"
    assert all(b.bytes_before <= sum(sizes) // 3 for b in out.bins)
    world.check_every_row_once()


# -- sweep and cleanup --------------------------------------------------------------------------------
def test_the_sweep_queues_quiet_partitions_with_small_files_and_forgets_settled_ones(world: World) -> None:
    for _ in range(3):
        world.compactor.files_added(world.land(), world.deadline)
    assert world.compactor.sweep() == [], "not quiet yet"
    world.clock.t += 601
    (cmd,) = world.compactor.sweep()
    assert (cmd.dataset, cmd.partition, cmd.reason) == ("orders", dict(REF.values), Trigger.SWEEP)
    assert world.compactor.compact(REF, cmd.reason, world.deadline).status == "compacted"
    assert world.state.markers("orders") == []
    world.state.mark(REF, PATH, world.clock.now() - 700)
    assert world.compactor.sweep() == [] and world.state.markers("orders") == [], "one file left: marker dropped"


def test_a_file_added_during_a_compaction_keeps_the_partition_marked(world: World) -> None:
    for _ in range(16):
        world.land()
    world.state.mark(REF, PATH, world.clock.now() - 1)

    class MarkDuring(AppendDuringReplace):
        def replace(self, *args: Any, **kwargs: Any) -> Any:
            self.world.clock.t += 1
            self.world.state.mark(REF, PATH, self.world.clock.now())
            return self.inner.replace(*args, **kwargs)

    world.compactor.committer = MarkDuring(world)  # type: ignore[assignment]
    world.compactor.compact(REF, Trigger.EVENT, world.deadline)
    assert [m.path for m in world.state.markers("orders")] == [PATH]


def test_cleanup_deletes_replaced_files_and_their_versions_only_after_the_grace_period(world: World) -> None:
    for _ in range(16):
        world.land()
    old_prefix = f"orders/{PATH}/gen={world.committer.current(REF).generation}/"
    world.compactor.compact(REF, Trigger.EVENT, world.deadline)
    assert world.store.count(old_prefix) >= 16
    before = world.visible()
    world.clock.t += SETTINGS.grace_seconds - 10
    report = world.compactor.cleanup(world.deadline)
    assert world.store.count(old_prefix) >= 16, "a query started before the flip can still read them"
    world.clock.t += 20
    report = world.compactor.cleanup(world.deadline)
    assert world.store.count(old_prefix) == 0 and report.objects_deleted >= 16 and report.overdue == 0
    assert world.store.count("_staging/") == 0, "staged copies are garbage too"
    assert world.visible() == before
