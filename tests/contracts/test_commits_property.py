"""Partition commits under interleaved writers and crashes, against in-memory backends.

Each attempt (a writer's stage + commit, or a cleanup run) runs in its own thread, but every backend
request is a scheduling point and only one thread runs at a time: the test chooses the interleaving
and may fault any request - crash before it (a hard kill: no `except` runs), fail it with an error,
apply it and lose the answer, or crash right after it. Advancing the clock past an attempt's
deadline kills it, as Lambda's timeout does. A retry is a new attempt with the same op id and the
same rows.

The reader's view is what Athena reads: every current object under the Glue partition's location.
After every step the view must hold each committed row exactly once, appends must appear whole,
rows may only disappear through an erasure and never come back; in the end every op completes,
cleanup past the grace period leaves no file that is not in a live manifest, and no old version.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from contracts import lake
from contracts.commits import (
    Append,
    CommitResult,
    CommitSettings,
    ConditionFailed,
    DeadlineExceeded,
    FileToStage,
    MissingObject,
    OpIdReused,
    PartitionBusy,
    PartitionCommitter,
    PartitionRef,
    ReplaceConflict,
)
from contracts.commits import committer as committer_module
from contracts.datasets import Column, Dataset, PartitionKey
from tests.fakes.commit_backends import FakeClock, MemCatalog, MemStore, MemTable

BUCKET = "lake"
DATASET = Dataset(
    name="events",
    columns=(Column(name="id", type="int64", nullable=False), Column(name="tenant", type="string")),
    partitioning=(PartitionKey(name="tenant_key", source="tenant"),),
)
#: the second value needs Hive escaping: a slash must not open a directory level
PARTS = (PartitionRef("events", {"tenant_key": "a"}), PartitionRef("events", {"tenant_key": "b/c"}))
SETTINGS = CommitSettings(
    grace_seconds=600,
    erasure_window_seconds=3600,
    max_op_seconds=60,
    clock_margin_seconds=5,
    op_record_ttl_seconds=7200,
    busy_wait_seconds=0.3,
)
PAST_CLAIMS = SETTINGS.max_op_seconds + SETTINGS.clock_margin_seconds + 1
PAST_GRACE = SETTINGS.grace_seconds + PAST_CLAIMS
FAULTS = ("crash", "error", "lost", "crash_after")
RETRYABLE = (PartitionBusy, DeadlineExceeded)


# -- scheduling -------------------------------------------------------------------------------------
class Crash(BaseException):
    """A hard kill: like a Lambda timeout, no except block of the code under test runs."""


class InjectedError(Exception):
    """A request failed (or its answer was lost) and the code under test sees an error."""


FAILURES = (Crash, InjectedError, *RETRYABLE)
_current = threading.local()


class Actor:
    """One attempt in its own thread, parked at every backend request until the test steps it."""

    def __init__(self, name: str, fn: Callable[[], Any], deadline: float) -> None:
        self.name, self.fn, self.deadline = name, fn, deadline
        self.fault: str | None = None
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.at = "start"
        self._resume = threading.Semaphore(0)
        self._parked = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> Actor:
        self._thread.start()
        self._parked.acquire()
        return self

    def _main(self) -> None:
        _current.actor = self
        try:
            checkpoint("start", lambda: None, (), {})
            self.result = self.fn()
        except BaseException as exc:  # the test inspects every outcome, including Crash
            self.error = exc
        finally:
            self.finished = True
            self._parked.release()

    def pause(self, at: str) -> str | None:
        self.at = at
        self._parked.release()
        self._resume.acquire()
        fault, self.fault = self.fault, None
        return fault

    def step(self, fault: str | None = None) -> None:
        assert not self.finished
        self.fault = fault
        self._resume.release()
        self._parked.acquire()

    def run(self, limit: int = 5000) -> None:
        for _ in range(limit):
            if self.finished:
                return
            self.step()
        raise AssertionError(f"{self.name} did not finish in {limit} steps (stuck at {self.at})")


def checkpoint(name: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Run one backend request as a scheduling point (a plain call on the test's own thread)."""
    actor: Actor | None = getattr(_current, "actor", None)
    if actor is None:
        return fn(*args, **kwargs)
    fault = actor.pause(name)
    if fault == "crash":
        raise Crash(name)
    if fault == "error":
        raise InjectedError(name)
    result = fn(*args, **kwargs)
    if fault == "lost":
        raise ConditionFailed(name) if name.endswith("put_if_version") else InjectedError(f"{name} (applied)")
    if fault == "crash_after":
        raise Crash(name)
    return result


class Checkpointed:
    """Proxy making every method call of a backend a scheduling point."""

    def __init__(self, target: Any, label: str) -> None:
        self._target, self._label = target, label

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)
        return lambda *a, **k: checkpoint(f"{self._label}.{name}", method, a, k)


class CountingIds:
    """uuid4 for the committer that counts from 1 in each World. The committer's random ids order its
    garbage schedule and staging keys; random ones made two runs of one example take different paths,
    and hypothesis (which replays prefixes of examples) failed with FlakyStrategyDefinition."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._next = itertools.count(1)

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=next(self._next))


IDS = CountingIds()


@pytest.fixture(autouse=True, scope="module")
def deterministic_ids() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(committer_module, "uuid", IDS)
        yield


# -- in-memory backends (tests/fakes/commit_backends.py), requests made scheduling points by Checkpointed --
class SchedulingClock(FakeClock):
    """Sleeping is a scheduling point and does not move time: only the test advances the clock."""

    def sleep(self, seconds: float) -> None:
        checkpoint("clock.sleep", lambda: None, (), {})


class World:
    """Backends, a fake clock and a committer whose requests are scheduling points."""

    def __init__(self) -> None:
        IDS.reset()
        self.clock = SchedulingClock(1_700_000_000.0)
        self.store, self.table, self.catalog = MemStore(self.clock), MemTable(), MemCatalog()
        self.actors: list[Actor] = []
        self.committer = PartitionCommitter(
            bucket=BUCKET,
            store=Checkpointed(self.store, "s3"),
            table=Checkpointed(self.table, "ddb"),
            catalog=Checkpointed(self.catalog, "glue"),
            clock=self.clock,
            datasets={DATASET.name: DATASET},
            settings=SETTINGS,
        )

    def spawn(self, name: str, fn: Callable[[float], Any]) -> Actor:
        deadline = self.clock.now() + SETTINGS.max_op_seconds
        actor = Actor(name, lambda: fn(deadline), deadline).start()
        self.actors.append(actor)
        return actor

    def kill_all(self) -> None:
        """End every attempt still parked, so no thread outlives its example."""
        for actor in self.actors:
            if not actor.finished:
                actor.step("crash")

    def view(self, ref: PartitionRef) -> list[int]:
        """What a query reads: every current object under the Glue location, concatenated."""
        location = self.catalog.location(DATASET, [ref.values["tenant_key"]])
        if location is None:
            return []
        prefix = location.removeprefix(f"s3://{BUCKET}/")
        return [row for data in self.store.live(prefix).values() for row in decoded(data)]

    def cleanup_attempt(self, deadline: float) -> object:
        return self.committer.cleanup(deadline=deadline)

    def cleanup_until_clean(self) -> None:
        """Cleanup past the grace period until nothing is scheduled (settling can schedule more)."""
        for _ in range(4):
            self.clock.t += PAST_GRACE
            actor = self.spawn("cleanup", self.cleanup_attempt)
            actor.run()
            assert actor.error is None, actor.error
            if not any(pk == "gc" for pk, _ in self.table.items):
                return
        raise AssertionError("cleanup left garbage scheduled")

    def assert_no_garbage(self) -> None:
        """Every stored version is a live file of a live manifest; nothing pending, nothing scheduled."""
        live: set[str] = set()
        for ref in PARTS:
            state = self.committer.current(ref)
            assert state.pending_op is None, f"{ref}: {state.pending_op} still pending"
            assert self.catalog.location(DATASET, [ref.values["tenant_key"]]) == state.location
            keys = {f.key for f in state.files}
            prefix = (state.location or "").removeprefix(f"s3://{BUCKET}/")
            assert set(self.store.live(prefix)) == keys if state.location else not keys
            live |= keys
        stray = set(self.store.versions) - live
        assert not stray, f"unreferenced objects remain: {sorted(stray)[:5]}"
        for key in live:  # extra versions of a live file are identical copies, never other content
            assert len({data for data, _ in self.store.versions[key]}) == 1, key
        assert not [sk for pk, sk in self.table.items if pk == "gc"]


def encode(rows: list[int]) -> bytes:
    return json.dumps(rows).encode()


@lru_cache(maxsize=4096)
def decoded(data: bytes) -> tuple[int, ...]:
    """An object's rows: the same bytes always hold the same rows, and the reader's view is rebuilt after every
    step from the same few objects, so each is parsed once."""
    return tuple(json.loads(data))


@dataclass
class Op:
    """A writer's operation: the same op id and rows on every attempt."""

    op_id: str
    kind: str  # append | compact | erase
    ref: PartitionRef
    contents: list[list[int]]
    remove: list[str] = field(default_factory=list)
    erased: set[int] = field(default_factory=set)
    status: str = "running"  # running | retry | done | conflict
    attempts: int = 0

    @cached_property
    def rows(self) -> frozenset[int]:
        """The rows an append adds (its contents never change: a retry writes the same rows); the checks after
        every step read it for every op, so it is computed once."""
        return frozenset(r for rows in self.contents for r in rows) if self.kind == "append" else frozenset()

    def attempt(self, world: World) -> Callable[[float], CommitResult]:
        def run(deadline: float) -> CommitResult:
            c = world.committer
            files = [
                c.stage(self.ref, self.op_id, f"f{i}.json", encode(rows), len(rows))
                for i, rows in enumerate(self.contents)
            ]
            if self.kind == "append":
                return c.append(self.ref, files, self.op_id, deadline=deadline)
            return c.replace(self.ref, self.remove, files, self.op_id, deadline=deadline)

        return run


@dataclass
class Batch:
    """Appends to several partitions committed in one batched step (`append_many`), as transform does
    for a chunk. Each is its own Op: readers may see one partition's append before another's, but each
    append whole; a retry of one of them alone (or in another batch) is the same op."""

    ops: list[Op]

    def attempt(self, world: World) -> Callable[[float], list[CommitResult]]:
        def run(deadline: float) -> list[CommitResult]:
            c = world.committer
            files = [
                FileToStage(op.ref, op.op_id, f"f{i}.json", encode(rows), len(rows))
                for op in self.ops
                for i, rows in enumerate(op.contents)
            ]
            staged = iter(c.stage_many(files))
            appends = [Append(op.ref, tuple(next(staged) for _ in op.contents), op.op_id) for op in self.ops]
            return c.append_many(appends, deadline=deadline)

        return run


def file_rows(world: World, key: str) -> list[int]:
    data = world.store.current(key)
    assert data is not None, key
    return json.loads(data)


# -- the state machine ------------------------------------------------------------------------------
MAX_ACTORS = 4
CRITICAL = (
    "glue.set_location",
    "glue.create",
    "glue.create_many",
    "s3.copy",
    "ddb.put_if_version",
    "ddb.put_many",
    "s3.purge_prefix",
)


class CommitMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = World()
        self.ops: list[Op] = []
        self.running: list[tuple[Actor, Op | Batch | None]] = []
        self.next_row = 0
        self.seen: set[int] = set()
        self.gone: set[int] = set()
        self.erasable: dict[int, Op] = {}  # rows targeted by an erasure that has not failed

    @initialize(files=st.lists(st.integers(1, 2), min_size=2, max_size=4))
    def committed_files(self, files: list[int]) -> None:
        """Both partitions start with a few committed files, so replaces have work from step one."""
        for ref in PARTS:
            for n in files:
                op = Op(f"init-{len(self.ops)}", "append", ref, [self._fresh_rows(n)], status="done")
                self.ops.append(op)
                op.attempt(self.w)(self.w.clock.now() + SETTINGS.max_op_seconds)

    # -- starting work ------------------------------------------------------------------------------
    def _room(self) -> bool:
        return len(self.running) < MAX_ACTORS

    def _start(self, op: Op | Batch) -> None:
        for each in op.ops if isinstance(op, Batch) else [op]:
            each.attempts += 1
            each.status = "running"
        name = "+".join(f"{each.op_id}#{each.attempts}" for each in (op.ops if isinstance(op, Batch) else [op]))
        self.running.append((self.w.spawn(name, op.attempt(self.w)), op))

    def _fresh_rows(self, n: int) -> list[int]:
        self.next_row += n
        return list(range(self.next_row - n, self.next_row))

    @precondition(_room)
    @rule(part=st.sampled_from(PARTS), sizes=st.lists(st.integers(1, 3), min_size=1, max_size=2))
    def append(self, part: PartitionRef, sizes: list[int]) -> None:
        op = Op(f"append-{len(self.ops)}", "append", part, [self._fresh_rows(n) for n in sizes])
        self.ops.append(op)
        self._start(op)

    @precondition(_room)
    @rule(
        parts=st.lists(st.sampled_from(PARTS), min_size=1, max_size=2, unique=True),
        sizes=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    )
    def batch_append(self, parts: list[PartitionRef], sizes: list[int]) -> None:
        """A transform chunk: one append per partition it touches, all in one batched step."""
        ops = [
            Op(f"chunk-{len(self.ops)}-{k}", "append", ref, [self._fresh_rows(n) for n in sizes])
            for k, ref in enumerate(parts)
        ]
        self.ops += ops
        self._start(Batch(ops))

    @precondition(lambda self: self._room() and any(op.status == "retry" and op.kind == "append" for op in self.ops))
    @rule()
    def retry_batch(self) -> None:
        """Failed appends retried together as one batch (at most one per partition), whatever ran them first."""
        waiting = {op.ref: op for op in reversed(self.ops) if op.status == "retry" and op.kind == "append"}
        self._start(Batch(list(waiting.values())))

    @precondition(_room)
    @rule(part=st.sampled_from(PARTS), data=st.data())
    def compact(self, part: PartitionRef, data: st.DataObject) -> None:
        files = self.w.committer.current(part).files
        if len(files) < 2:
            return
        chosen = data.draw(st.lists(st.sampled_from(files), min_size=2, max_size=4, unique=True))
        rows = [r for f in chosen for r in file_rows(self.w, f.key)]
        op = Op(f"compact-{len(self.ops)}", "compact", part, [rows], [f.name for f in chosen])
        self.ops.append(op)
        self._start(op)

    @precondition(_room)
    @rule(part=st.sampled_from(PARTS), data=st.data())
    def erase(self, part: PartitionRef, data: st.DataObject) -> None:
        files = self.w.committer.current(part).files
        if not files:
            return
        chosen = data.draw(st.lists(st.sampled_from(files), min_size=1, max_size=2, unique=True))
        contents = {f.name: file_rows(self.w, f.key) for f in chosen}
        free = sorted(r for rows in contents.values() for r in rows if r not in self.erasable)
        if not free:
            return
        victims = set(data.draw(st.lists(st.sampled_from(free), min_size=1, unique=True)))
        kept = [[r for r in rows if r not in victims] for rows in contents.values()]
        op = Op(f"erase-{len(self.ops)}", "erase", part, [k for k in kept if k], list(contents), victims)
        self.ops.append(op)
        self.erasable.update(dict.fromkeys(victims, op))
        self._start(op)

    @precondition(lambda self: self._room() and any(op.status == "retry" for op in self.ops))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        self._start(data.draw(st.sampled_from([op for op in self.ops if op.status == "retry"])))

    @precondition(lambda self: self._room() and not any(op is None for _, op in self.running))
    @rule()
    def cleanup(self) -> None:
        self.running.append((self.w.spawn("cleanup", self.w.cleanup_attempt), None))

    # -- moving work ------------------------------------------------------------------------------
    @precondition(lambda self: self.running)
    @rule(i=st.integers(0, MAX_ACTORS - 1), fault=st.sampled_from((None,) * 6 + FAULTS))
    def step(self, i: int, fault: str | None) -> None:
        actor, _ = self.running[i % len(self.running)]
        actor.step(fault)
        self._reap()

    @precondition(lambda self: self.running)
    @rule(i=st.integers(0, MAX_ACTORS - 1), n=st.integers(1, 40))
    def run_for(self, i: int, n: int) -> None:
        actor, _ = self.running[i % len(self.running)]
        for _ in range(n):
            if actor.finished:
                break
            actor.step()
            self._check()
        self._reap()

    @precondition(lambda self: self.running)
    @rule(i=st.integers(0, MAX_ACTORS - 1), at=st.sampled_from(CRITICAL))
    def run_to(self, i: int, at: str) -> None:
        """Park an attempt right before a write that changes what readers see or who owns the partition."""
        actor, _ = self.running[i % len(self.running)]
        for _ in range(60):
            if actor.finished:
                break
            actor.step()
            self._check()
            if actor.at == at:
                break
        self._reap()

    @rule(dt=st.sampled_from([0.2, 1.0, 10.0, PAST_CLAIMS, PAST_GRACE]))
    def tick(self, dt: float) -> None:
        self.w.clock.t += dt
        for actor, _ in self.running:
            if actor.deadline <= self.w.clock.now():
                actor.step("crash")  # the Lambda timeout: the attempt stops wherever it was
        self._reap()

    # -- checking ---------------------------------------------------------------------------------
    @invariant()
    def reader_sees_each_committed_row_once(self) -> None:
        self._check()

    def _check(self) -> set[int]:
        rows = [r for ref in PARTS for r in self.w.view(ref)]
        visible = set(rows)
        assert len(rows) == len(visible), f"duplicate rows visible: {sorted(r for r in visible if rows.count(r) > 1)}"
        assert not visible & self.gone, f"rows came back after they disappeared: {sorted(visible & self.gone)}"
        owners = {r: op for op in self.ops for r in op.rows}
        assert visible <= set(owners), f"rows nobody appended: {sorted(visible - set(owners))}"
        missing = self.seen - visible
        assert missing <= set(self.erasable), f"rows lost without an erasure: {sorted(missing - set(self.erasable))}"
        self.gone |= missing
        self.seen |= visible
        for op in self.ops:
            if op.kind == "append":
                shown, whole = op.rows & visible, op.rows - self.gone
                assert shown in (set(), whole), f"{op.op_id} partly visible: {sorted(shown)} of {sorted(whole)}"
                assert shown or not (op.rows & self.seen) or not whole, f"{op.op_id} vanished"
            elif op.kind == "erase" and op.status != "conflict":  # a failed erasure's rows may be erased later
                erased = op.erased & self.gone
                assert erased in (set(), op.erased), f"{op.op_id} partly applied: {sorted(erased)}"
        return visible

    def _reap(self) -> None:
        for actor, op in [x for x in self.running if x[0].finished]:
            self.running.remove((actor, op))
            self._outcome(actor, op)

    def _outcome(self, actor: Actor, op: Op | Batch | None) -> None:
        if isinstance(op, Batch):  # one error for the batch: every op of it retries (the done ones replay)
            event(f"batch of {len(op.ops)}: {type(actor.error).__name__ if actor.error else 'ok'}")
            for each in op.ops:
                self._outcome(actor, each)
            return
        err = actor.error
        event(f"{op.kind if op else 'cleanup'}: {type(err).__name__ if err else 'ok'}")  # --hypothesis-show-statistics
        if op is None:  # cleanup: may be cut short, never fail otherwise
            assert err is None or isinstance(err, FAILURES), repr(err)
            return
        visible = self._check()
        if err is None:
            op.status = "done"
            if op.kind == "append":
                assert op.rows - self.gone <= visible, f"{op.op_id} returned but is not visible"
            if op.kind == "erase":
                assert not op.erased & visible, f"{op.op_id} returned but erased rows are visible"
        elif isinstance(err, ReplaceConflict) and op.kind != "append":
            op.status = "conflict"
            if op.kind == "erase":
                assert not op.erased & self.gone, f"{op.op_id} failed but removed rows"
                for r in op.erased:
                    del self.erasable[r]
        elif isinstance(err, FAILURES):
            op.status = "retry"
        else:
            raise AssertionError(f"{actor.name} failed: {err!r}") from err

    def teardown(self) -> None:
        try:
            if sys.exc_info()[0] is None:
                self._finish_and_verify()
        finally:
            self.w.kill_all()

    def _finish_and_verify(self) -> None:
        self.tick(PAST_CLAIMS)
        for op in [op for op in self.ops if op.status == "retry"]:
            self._start(op)
            actor, _ = self.running.pop()
            actor.run()
            self._outcome(actor, op)
            assert op.status in ("done", "conflict"), f"{op.op_id} did not complete: {actor.error!r}"
        self.w.cleanup_until_clean()
        visible = self._check()
        appended = {r for op in self.ops if op.kind == "append" for r in op.rows}
        erased = {r for op in self.ops if op.kind == "erase" and op.status == "done" for r in op.erased}
        assert visible == appended - erased
        self.w.assert_no_garbage()


CommitMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None, report_multiple_bugs=False
)
TestCommitMachine = CommitMachine.TestCase


# -- every step of every kind of commit, crashed and recovered, deterministically -----------------------
@dataclass
class Scenario:
    name: str
    base: list[list[list[int]]]  # appends committed before the op, one list of files each
    kind: str
    contents: list[list[int]]
    remove: list[list[int]] = field(default_factory=list)  # base files to replace, by content
    erased: set[int] = field(default_factory=set)

    def setup(self, w: World, ref: PartitionRef) -> Op:
        for i, files in enumerate(self.base):
            Op(f"base-{i}", "append", ref, files).attempt(w)(w.clock.now() + 60)
        by_rows = {tuple(file_rows(w, f.key)): f.name for f in w.committer.current(ref).files}
        remove = [by_rows[tuple(rows)] for rows in self.remove]
        return Op("op", self.kind, ref, self.contents, remove, set(self.erased))

    def expected(self) -> list[int]:
        rows = {r for files in self.base for f in files for r in f}
        if self.kind == "append":
            rows |= {r for f in self.contents for r in f}
        return sorted(rows - self.erased)


SCENARIOS = [
    Scenario("first append", [], "append", [[1, 2]]),
    Scenario("first append of two files", [], "append", [[1], [2, 3]]),
    Scenario("append in place", [[[1]], [[2]]], "append", [[3, 4]]),
    Scenario("append of two files", [[[1]], [[2]]], "append", [[3], [4]]),
    Scenario("compaction", [[[1]], [[2]], [[3]], [[4]]], "compact", [[1, 2, 3]], [[1], [2], [3]]),
    Scenario("erasure", [[[1, 2]], [[3]], [[4]]], "erase", [[2]], [[1, 2], [3]], {1, 3}),
    Scenario("erasure to nothing", [[[1, 2]]], "erase", [], [[1, 2]], {1, 2}),
]


def _steps(scenario: Scenario) -> int:
    w = World()
    op = scenario.setup(w, PARTS[1])
    actor = w.spawn("count", op.attempt(w))
    n = 0
    while not actor.finished:
        actor.step()
        n += 1
    assert actor.error is None, actor.error
    return n


def _run_checked(
    w: World, actor: Actor, ref: PartitionRef, allowed: list[list[int]], fault_at: int = -1, fault: str | None = None
) -> None:
    """Step an actor; after every step the view must be exactly one of the allowed states."""
    k = 0
    while not actor.finished:
        actor.step(fault if k == fault_at else None)
        k += 1
        assert sorted(w.view(ref)) in allowed, f"view {sorted(w.view(ref))} after step {k} ({actor.at})"


@pytest.mark.parametrize("recovery", ["retry", "other writer", "cleanup"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_crash_at_every_step_then_recover(scenario: Scenario, recovery: str) -> None:
    ref = PARTS[1]
    for k in range(_steps(scenario) + 1):
        for fault in FAULTS:
            w = World()
            op = scenario.setup(w, ref)
            before, after = sorted(w.view(ref)), scenario.expected()
            first = w.spawn("first", op.attempt(w))
            try:
                _run_checked(w, first, ref, [before, after], k, fault)
                w.clock.t += PAST_CLAIMS
                if recovery == "other writer":  # takes over a crashed intent, then appends its own row
                    other = Op("other", "append", ref, [[99]])
                    helper = w.spawn("other", other.attempt(w))
                    _run_checked(w, helper, ref, [before, after, sorted([*before, 99]), sorted([*after, 99])])
                    assert helper.error is None, helper.error
                    before, after = sorted([*before, 99]), sorted([*after, 99])
                if recovery == "cleanup":
                    w.clock.t += PAST_GRACE
                    cleaner = w.spawn("cleanup", w.cleanup_attempt)
                    _run_checked(w, cleaner, ref, [before, after])
                    assert cleaner.error is None, cleaner.error
                second = w.spawn("retry", op.attempt(w))
                _run_checked(w, second, ref, [before, after])
                assert second.error is None, f"{scenario.name}, {fault} at step {k}: {second.error!r}"
                assert sorted(w.view(ref)) == after
                w.cleanup_until_clean()
                assert sorted(w.view(ref)) == after
                w.assert_no_garbage()
            finally:
                w.kill_all()


def test_replace_of_a_file_already_replaced_is_a_conflict_and_changes_nothing() -> None:
    w = World()
    ref = PARTS[0]
    for i in range(3):
        Op(f"a{i}", "append", ref, [[i]]).attempt(w)(w.clock.now() + 60)
    name = {file_rows(w, f.key)[0]: f.name for f in w.committer.current(ref).files}
    Op("compact", "compact", ref, [[0, 1]], [name[0], name[1]]).attempt(w)(w.clock.now() + 60)
    before = w.committer.current(ref)
    with pytest.raises(ReplaceConflict):  # planned on the files before compaction
        Op("erase", "erase", ref, [[1]], [name[0], name[1]], {0}).attempt(w)(w.clock.now() + 60)
    assert w.committer.current(ref) == before
    assert sorted(w.view(ref)) == [0, 1, 2]


def test_a_paused_claimant_never_moves_the_catalog_back() -> None:
    """A claimant paused just before its flip keeps the partition: nobody commits past it meanwhile."""
    w = World()
    ref = PARTS[0]
    for i in range(3):
        Op(f"a{i}", "append", ref, [[i]]).attempt(w)(w.clock.now() + 60)
    name = {file_rows(w, f.key)[0]: f.name for f in w.committer.current(ref).files}
    compaction = w.spawn("compact", Op("compact", "compact", ref, [[0, 1]], [name[0], name[1]]).attempt(w))
    while compaction.at != "glue.set_location":
        compaction.step()
    late = Op("late", "append", ref, [[10], [11]])  # two files: would build (and flip to) a newer generation
    with pytest.raises(PartitionBusy):
        late.attempt(w)(w.clock.now() + 60)
    compaction.run()
    assert compaction.error is None, compaction.error
    late.attempt(w)(w.clock.now() + 60)
    assert sorted(w.view(ref)) == [0, 1, 2, 10, 11]


def test_replaced_files_stay_for_the_grace_period_then_every_version_goes() -> None:
    w = World()
    ref = PARTS[0]
    for i in range(2):
        Op(f"a{i}", "append", ref, [[i]]).attempt(w)(w.clock.now() + 60)
    old = w.committer.current(ref)
    Op("compact", "compact", ref, [[0, 1]], [f.name for f in old.files]).attempt(w)(w.clock.now() + 60)
    w.store.put(old.files[0].key, b"[0]")  # a second version of a replaced file
    old_prefix = old.location.removeprefix(f"s3://{BUCKET}/")
    w.committer.cleanup(w.clock.now() + SETTINGS.grace_seconds - 1)
    assert len(w.store.versions[old.files[0].key]) == 2, "replaced files must outlive running queries"
    w.clock.t += SETTINGS.grace_seconds + 1
    report = w.committer.cleanup()
    assert not [k for k in w.store.versions if k.startswith((old_prefix, lake.STAGING_ROOT))]
    assert report.objects_deleted >= 3 and report.overdue == 0 and report.complete
    assert sorted(w.view(ref)) == [0, 1]
    w.assert_no_garbage()


def test_retry_after_success_is_replayed_not_duplicated() -> None:
    w = World()
    ref = PARTS[0]
    op = Op("a", "append", ref, [[1, 2]])
    first = op.attempt(w)(w.clock.now() + 60)
    again = op.attempt(w)(w.clock.now() + 60)
    assert again.replayed and not first.replayed
    assert (again.added, again.generation) == (first.added, first.generation)
    assert sorted(w.view(ref)) == [1, 2]


def test_busy_partition_raises_retryable_error_until_the_claim_expires() -> None:
    w = World()
    ref = PARTS[0]
    first = w.spawn("first", Op("a", "append", ref, [[1]]).attempt(w))
    while not first.at.endswith("copy"):  # holds the claim, about to make its file visible
        first.step()
    first.step("crash")
    with pytest.raises(PartitionBusy):
        Op("b", "append", ref, [[2]]).attempt(w)(w.clock.now() + 60)
    w.clock.t += PAST_CLAIMS
    Op("b", "append", ref, [[2]]).attempt(w)(w.clock.now() + 60)  # takes over "a", then commits "b"
    assert sorted(w.view(ref)) == [1, 2]


def test_partition_values_are_escaped_in_keys() -> None:
    w = World()
    Op("a", "append", PARTS[1], [[1]]).attempt(w)(w.clock.now() + 60)
    state = w.committer.current(PARTS[1])
    assert state.location == f"s3://{BUCKET}/events/tenant_key=b%2Fc/gen=1/"
    assert lake.generation_of(state.location, BUCKET, "events", "tenant_key=b%2Fc") == 1


def test_an_op_id_names_one_operation() -> None:
    w = World()
    Op("a", "append", PARTS[0], [[1]]).attempt(w)(w.clock.now() + 60)
    with pytest.raises(OpIdReused):
        Op("a", "append", PARTS[0], [[1], [2]]).attempt(w)(w.clock.now() + 60)
    assert w.view(PARTS[0]) == [1]


def test_a_staged_file_close_to_its_purge_is_refused_before_any_intent() -> None:
    w = World()
    c = w.committer
    staged = c.stage(PARTS[0], "a", "f.json", encode([1]), 1)
    w.clock.t += SETTINGS.grace_seconds - 2 * SETTINGS.max_op_seconds - SETTINGS.clock_margin_seconds + 1
    with pytest.raises(MissingObject):
        c.append(PARTS[0], [staged], "a")
    assert c.current(PARTS[0]).version == 0  # no intent was written
    c.append(PARTS[0], [c.stage(PARTS[0], "a", "f.json", encode([1]), 1)], "a")
    assert w.view(PARTS[0]) == [1]


def test_cleanup_postpones_a_partition_whose_claim_is_live() -> None:
    """Settling takes over expired claims only: a live claimant may be about to flip."""
    w = World()
    ref = PARTS[0]
    for i in range(3):
        Op(f"a{i}", "append", ref, [[i]]).attempt(w)(w.clock.now() + 60)
    w.committer.stage(ref, "abandoned", "f.json", encode([9]), 1)  # its writer died before committing
    w.clock.t += PAST_GRACE
    name = {file_rows(w, f.key)[0]: f.name for f in w.committer.current(ref).files}
    compaction = w.spawn("compact", Op("compact", "compact", ref, [[0, 1]], [name[0], name[1]]).attempt(w))
    while compaction.at != "glue.set_location":
        compaction.step()
    report = w.committer.cleanup()
    assert report.postponed >= 1
    with pytest.raises(PartitionBusy):  # two files: would build and flip a newer generation
        Op("late", "append", ref, [[10], [11]]).attempt(w)(w.clock.now() + 60)
    compaction.run()
    assert compaction.error is None, compaction.error
    Op("late", "append", ref, [[10], [11]]).attempt(w)(w.clock.now() + 60)
    assert sorted(w.view(ref)) == [0, 1, 2, 10, 11]
    w.cleanup_until_clean()
    w.assert_no_garbage()


# -- a batched append (a transform chunk) crashed at every step, then recovered ----------------------------
def _batch_world() -> tuple[World, Batch, dict[PartitionRef, list[list[int]]]]:
    """Partition a holds two files (its append is in place), b is new (its append creates the partition)."""
    w = World()
    for i, rows in enumerate([[1], [2]]):
        Op(f"base-{i}", "append", PARTS[0], [rows]).attempt(w)(w.clock.now() + 60)
    batch = Batch([Op("chunk-a", "append", PARTS[0], [[3, 4]]), Op("chunk-b", "append", PARTS[1], [[5], [6]])])
    allowed = {PARTS[0]: [[1, 2], [1, 2, 3, 4]], PARTS[1]: [[], [5, 6]]}
    return w, batch, allowed


def _run_batch_checked(
    w: World, actor: Actor, allowed: dict[PartitionRef, list[list[int]]], fault_at: int = -1, fault: str | None = None
) -> None:
    """Step an actor; after every step each partition shows its state before or after its own append."""
    k = 0
    while not actor.finished:
        actor.step(fault if k == fault_at else None)
        k += 1
        for ref, views in allowed.items():
            assert sorted(w.view(ref)) in views, f"{ref}: view {sorted(w.view(ref))} after step {k} ({actor.at})"


def _batch_steps() -> int:
    w, batch, _ = _batch_world()
    actor = w.spawn("count", batch.attempt(w))
    n = 0
    while not actor.finished:
        actor.step()
        n += 1
    assert actor.error is None, actor.error
    return n


@pytest.mark.parametrize("recovery", ["batch retry", "single retries", "other writer", "cleanup"])
def test_batched_append_crash_at_every_step_then_recover(recovery: str) -> None:
    for k in range(_batch_steps() + 1):
        for fault in FAULTS:
            w, batch, allowed = _batch_world()
            try:
                first = w.spawn("first", batch.attempt(w))
                _run_batch_checked(w, first, allowed, k, fault)
                w.clock.t += PAST_CLAIMS
                if recovery == "other writer":  # another chunk's batch takes over both crashed intents first
                    other = Batch(
                        [Op("other-a", "append", PARTS[0], [[98]]), Op("other-b", "append", PARTS[1], [[99]])]
                    )
                    helper = w.spawn("other", other.attempt(w))
                    grown = {
                        ref: views + [sorted([*v, extra]) for v in views]
                        for (ref, views), extra in zip(allowed.items(), (98, 99), strict=True)
                    }
                    _run_batch_checked(w, helper, grown)
                    assert helper.error is None, helper.error
                    allowed = {
                        ref: [sorted([*v, extra]) for v in views]
                        for (ref, views), extra in zip(allowed.items(), (98, 99), strict=True)
                    }
                if recovery == "cleanup":
                    w.clock.t += PAST_GRACE
                    cleaner = w.spawn("cleanup", w.cleanup_attempt)
                    _run_batch_checked(w, cleaner, allowed)
                    assert cleaner.error is None, cleaner.error
                retries = [batch] if recovery != "single retries" else [Batch([op]) for op in batch.ops]
                for retry in retries:
                    second = w.spawn("retry", retry.attempt(w))
                    _run_batch_checked(w, second, allowed)
                    assert second.error is None, f"{recovery}, {fault} at step {k}: {second.error!r}"
                for ref, views in allowed.items():
                    assert sorted(w.view(ref)) == views[-1], f"{recovery}, {fault} at step {k}"
                w.cleanup_until_clean()
                w.assert_no_garbage()
            finally:
                w.kill_all()


def test_batched_append_waits_for_a_held_partition_and_commits_the_free_one() -> None:
    """A partition under another writer's live claim goes through `append`'s wait; the other commits meanwhile."""
    w = World()
    holder = w.spawn("holder", Op("held", "append", PARTS[0], [[1]]).attempt(w))
    while not holder.at.endswith("copy"):  # holds PARTS[0]'s claim, about to make its file visible
        holder.step()
    batch = Batch([Op("chunk-a", "append", PARTS[0], [[2]]), Op("chunk-b", "append", PARTS[1], [[3]])])
    with pytest.raises(PartitionBusy):
        batch.attempt(w)(w.clock.now() + 60)
    assert w.view(PARTS[1]) == [3]  # the free partition committed although its neighbour was busy
    holder.run()
    assert holder.error is None, holder.error
    results = batch.attempt(w)(w.clock.now() + 60)
    assert [r.replayed for r in results] == [False, True]
    assert (sorted(w.view(PARTS[0])), w.view(PARTS[1])) == ([1, 2], [3])
