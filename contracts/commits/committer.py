"""The committer: append and replace files of one partition so readers see each committed row exactly once.

The protocol (intent with a claim, roll forward, record, finalise; takeover after expiry; cleanup
after the grace period) is described in the package docstring and in docs/design/partition-commits.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from contracts import lake
from contracts.commits.dynamodb import DynamoStateTable
from contracts.commits.errors import (
    CatalogMismatch,
    CommitError,
    ConditionFailed,
    DeadlineExceeded,
    MissingObject,
    ObjectNotFound,
    OpIdReused,
    PartitionBusy,
    ReplaceConflict,
)
from contracts.commits.glue import GlueCatalog
from contracts.commits.model import (
    Append,
    CleanupReport,
    CommitResult,
    CommitSettings,
    FileEntry,
    FileToStage,
    NewFile,
    ObjectStat,
    PartitionRef,
    PartitionState,
)
from contracts.commits.ports import Catalog, Clock, Item, ObjectStore, StateTable, SystemClock
from contracts.commits.s3 import S3ObjectStore
from contracts.commits.state import GC_PK, OP_SK_PREFIX, STATE_SK, Attempt, Pending, Spec, Staged, State, Where
from contracts.datasets import Dataset, load_datasets

T = TypeVar("T")
X = TypeVar("X")
#: rounds of batched intents before a still-contended partition takes `append`'s own loop
BATCH_ROUNDS = 3
#: staged keys per garbage entry (about 200 bytes each: far below DynamoDB's 400 KB item limit)
GC_ENTRY_KEYS = 500


class PartitionCommitter:
    """Appends and replaces files of lake partitions so readers see each committed row exactly once."""

    def __init__(
        self,
        *,
        bucket: str,
        store: ObjectStore,
        table: StateTable,
        catalog: Catalog,
        clock: Clock | None = None,
        datasets: Mapping[str, Dataset] | None = None,
        settings: CommitSettings | None = None,
    ) -> None:
        self.bucket = bucket
        self._store, self._table, self._catalog = store, table, catalog
        self._clock = clock or SystemClock()
        self._datasets = datasets if datasets is not None else load_datasets()
        self.settings = settings or CommitSettings()
        #: files this committer staged and not yet committed: their size and reservation time, so a
        #: commit needs no HEAD to check them (an older reservation time only makes the age check stricter)
        self._staged_here: dict[str, ObjectStat] = {}

    @classmethod
    def on_aws(cls, *, bucket: str, table_name: str, database: str, **kwargs: Any) -> PartitionCommitter:
        """The committer on S3 (versioned lake bucket), DynamoDB (state table) and Glue (database)."""
        return cls(
            bucket=bucket,
            store=S3ObjectStore(bucket),
            table=DynamoStateTable(table_name),
            catalog=GlueCatalog(database),
            **kwargs,
        )

    # -- staging ------------------------------------------------------------------------------------
    def reserve_staging(self, ref: PartitionRef, op_id: str, name: str) -> str:
        """A fresh staging key for this attempt, registered for deletion after the grace period.

        Registering first means a staged file can never outlive the erasure window, even if the
        writer dies right after writing it. Write the file and commit within the same attempt.
        """
        key = self._staging_key(ref, op_id, name)
        self._put_gc(self._clock.now() + self.settings.grace_seconds, refs=[ref], keys=[key])
        return key

    def stage(self, ref: PartitionRef, op_id: str, name: str, data: bytes, rows: int) -> NewFile:
        """Stage bytes (e.g. a Parquet file written to a buffer) for a later `append`/`replace`."""
        return self.stage_many([FileToStage(ref, op_id, name, data, rows)])[0]

    def stage_many(self, files: Sequence[FileToStage], *, workers: int = 1) -> list[NewFile]:
        """Stage files of many partitions: one garbage entry per GC_ENTRY_KEYS files registers them
        (before any is written, as `reserve_staging`), then the objects are written, `workers` at a time.
        """
        keys = [self._staging_key(f.ref, f.op_id, f.name) for f in files]
        reserved = self._clock.now()
        for i in range(0, len(files), GC_ENTRY_KEYS):
            refs = list(dict.fromkeys(f.ref for f in files[i : i + GC_ENTRY_KEYS]))
            self._put_gc(reserved + self.settings.grace_seconds, refs=refs, keys=keys[i : i + GC_ENTRY_KEYS])

        def put(i: int) -> None:
            self._store.put(keys[i], files[i].data)
            self._staged_here[keys[i]] = ObjectStat(len(files[i].data), reserved)

        _raise_first(self._each(put, range(len(files)), workers))
        return [NewFile(f.name, key, f.rows) for f, key in zip(files, keys, strict=True)]

    # -- commits --------------------------------------------------------------------------------
    def append(
        self, ref: PartitionRef, files: Sequence[NewFile], op_id: str, *, deadline: float | None = None
    ) -> CommitResult:
        """Add staged files atomically; a retry with the same op id never adds them twice."""
        if not files:
            raise ValueError("append needs at least one file")
        spec = Spec(op_id, "append", (), _unique_files(files))
        return self._commit(self._where(ref), spec, self._attempt(deadline))

    def append_many(
        self, appends: Sequence[Append], *, deadline: float | None = None, workers: int = 1
    ) -> list[CommitResult]:
        """Append to many partitions in one batched step, each with exactly `append`'s guarantees.

        Every partition is still its own commit (its own intent, claim, record); what is shared is
        the requests that need no condition: one staging entry (`stage_many`), states and op records
        in BatchGetItem reads, no HEAD of files this committer staged, new Glue partitions read and
        created in batches, op records in BatchWriteItem. Intents and finalises stay one conditional
        put per partition, `workers` at a time: partitions are independent, so a transaction's
        all-or-nothing would buy nothing and bill twice (docs/design/partition-commits.md).
        A partition another writer holds, or one still contended after a few rounds, goes through
        `append`'s own loop (wait, take over, rebase) on the same attempt. One partition failing does
        not stop the others; the first error is raised once all are done, and a retry with the same
        op ids replays those that committed. Results are in the order of `appends`.
        """
        attempt = self._attempt(deadline)
        jobs: list[tuple[Where, Spec]] = []
        for a in appends:
            if not a.files:
                raise ValueError("append needs at least one file")
            jobs.append((self._where(a.ref), Spec(a.op_id, "append", (), _unique_files(a.files))))
        if len({where.pk for where, _ in jobs}) != len(jobs):
            raise ValueError("append_many takes one append per partition")
        outcome: dict[int, CommitResult | Exception] = {}
        staged: dict[int, list[Staged]] = {}
        todo, slow = list(range(len(jobs))), []
        for _ in range(BATCH_ROUNDS):
            if not todo:
                break
            self._guard(attempt)
            states = dict(zip(todo, self._load_many([jobs[i][0] for i in todo]), strict=True))
            slow += [i for i in todo if states[i].pending is not None]  # held: `append`'s loop waits or takes over
            free = [i for i in todo if states[i].pending is None]
            self._guard(attempt)  # op records only after the states: see `_commit`
            records = dict(zip(free, self._op_records([jobs[i] for i in free]), strict=True))
            planned: list[tuple[int, State]] = []
            for i in free:
                where, spec = jobs[i]
                if records[i] is not None:
                    outcome[i] = records[i]  # type: ignore[assignment]  # a result, or OpIdReused
                    continue
                try:
                    if i not in staged:
                        staged[i] = self._stat_staged(where, spec)
                    pending = self._plan(where, states[i], spec, staged[i], attempt)
                except Exception as exc:
                    outcome[i] = exc
                    continue
                if pending is None:  # the op's files are all in the manifest: applied, record expired
                    outcome[i] = self._result(where, spec.op_id, states[i].gen, spec.names, (), replayed=True)
                else:
                    planned.append((i, replace(states[i], pending=pending)))
            todo, claimed = [], []

            def claim(entry: tuple[int, State]) -> State:
                i, state = entry
                return self._save(jobs[i][0], state, state.version)

            for (i, _), saved in zip(planned, self._each(claim, planned, workers), strict=True):
                if isinstance(saved, ConditionFailed):  # someone committed first (or the ack was lost): reload
                    todo.append(i)
                elif isinstance(saved, Exception):
                    outcome[i] = saved
                else:
                    claimed.append((i, jobs[i][0], saved))
            outcome.update(self._roll_forward_many(claimed, attempt, workers))
        slow += todo

        def one(i: int) -> CommitResult:
            return self._commit(jobs[i][0], jobs[i][1], attempt, staged.get(i))

        outcome.update(zip(slow, self._each(one, slow, workers), strict=True))
        ordered = [outcome[i] for i in range(len(jobs))]
        _raise_first(ordered)
        return ordered  # type: ignore[return-value]  # no exception left

    def replace(
        self,
        ref: PartitionRef,
        remove: Sequence[str],
        add: Sequence[NewFile],
        op_id: str,
        *,
        deadline: float | None = None,
    ) -> CommitResult:
        """Swap committed files (by name) for staged ones atomically; `add` may be empty.

        Appends committed meanwhile are kept. If a file to remove is no longer current, nothing
        changes and ReplaceConflict is raised: the caller read stale input and must re-plan.
        """
        if not remove and not add:
            raise ValueError("replace needs files to remove or to add")
        if len(set(remove)) != len(remove):
            raise ValueError("replace: duplicate names in remove")
        spec = Spec(op_id, "replace", tuple(remove), _unique_files(add))
        return self._commit(self._where(ref), spec, self._attempt(deadline))

    def reconcile(self, ref: PartitionRef, *, deadline: float | None = None) -> CommitResult | None:
        """Point the Glue partition back at the committed generation (e.g. after it was deleted)."""
        where = self._where(ref)
        state = self._load(where)
        if state.gen == 0 or (state.pending is None and self._catalog_ok(where, state.gen)):
            return None
        return self._commit(where, Spec(f"sync-{uuid.uuid4().hex}", "sync", (), ()), self._attempt(deadline))

    def current(self, ref: PartitionRef) -> PartitionState:
        """The committed manifest (strongly consistent), with each file's key in its generation."""
        where = self._where(ref)
        state = self._load(where)
        files = tuple(
            FileEntry(n, lake.file_key(ref.dataset, where.path, state.gen, n), r, b)
            for n, (r, b) in sorted(state.files.items())
        )
        location = self._location(where, state.gen) if state.gen else None
        pending = state.pending.op_id if state.pending else None
        return PartitionState(ref, state.gen, location, files, state.version or 0, pending)

    def staged_op_state(self, ref: PartitionRef, digest: str) -> str:
        """What became of the op whose staged files live under `digest` (see lake.staging_key):
        "committed", "pending" (its intent is being rolled forward) or "unknown" (not committed yet,
        or never will be). Erasure uses it to delete committed staging copies early and safely."""
        where = self._where(ref)
        if self._table.get(where.pk, OP_SK_PREFIX + digest) is not None:
            return "committed"
        state = self._load(where)
        if state.pending is not None and state.pending.digest == digest:
            return "pending"
        return "unknown"

    # -- the protocol ---------------------------------------------------------------------------
    def _commit(self, where: Where, spec: Spec, attempt: Attempt, staged: list[Staged] | None = None) -> CommitResult:
        if not spec.add:  # nothing staged, so nothing registered: make sure cleanup settles a crash
            self._put_gc(self._clock.now() + self.settings.grace_seconds, refs=[where.ref])
        waited = 0.0
        while True:
            self._guard(attempt)
            state = self._load(where)
            p = state.pending
            if p is not None:
                if p.digest == spec.digest and p.fingerprint != spec.fingerprint:
                    raise OpIdReused(f"{where.pk}: op {spec.op_id!r} was committed with other arguments")
                if p.attempt != attempt.id and p.expires >= self._clock.now():
                    waited = self._wait(where, p, waited, attempt)
                    continue
                claimed = state if p.attempt == attempt.id else self._take_over(where, state, attempt)
                if claimed is None:
                    continue
                result = self._roll_forward(where, claimed, attempt)
                if p.digest == spec.digest:
                    return result
                continue
            done = self._op_record(where, spec)
            if done is not None:
                return done
            if staged is None:  # only now: a retry of a committed op needs no staged files
                staged = self._stat_staged(where, spec)
            pending = self._plan(where, state, spec, staged, attempt)
            if pending is None:  # the op's files are all in the manifest: applied, record expired
                return self._result(where, spec.op_id, state.gen, spec.names, (), replayed=True)
            try:
                claimed = self._save(where, replace(state, pending=pending), state.version)
            except ConditionFailed:
                continue  # someone committed first (or our write landed and its ack was lost): reload
            return self._roll_forward(where, claimed, attempt)

    def _plan(
        self, where: Where, state: State, spec: Spec, staged: Sequence[Staged], attempt: Attempt
    ) -> Pending | None:
        """Turn a request into an intent against the state it will be conditioned on."""
        gone = [n for n in spec.remove if n not in state.files]
        if gone:
            raise ReplaceConflict(f"{where.pk}: {len(gone)} file(s) to replace are no longer current: {gone[:3]}")
        present = [n for n in spec.names if n in state.files]
        if present and len(present) == len(spec.names):
            return None
        if present:
            raise OpIdReused(f"{where.pk}: some files of op {spec.op_id!r} are already committed: {present[:3]}")
        if spec.kind == "sync":
            if state.gen == 0:
                raise CommitError(f"{where.pk}: nothing committed, nothing to reconcile")
            mode, dst = "sync", state.gen
        elif state.gen == 0 or spec.remove or len(spec.add) > 1:
            mode, dst = "newgen", state.gen + 1
        else:
            mode, dst = "inplace", state.gen
        return Pending(
            spec.op_id,
            spec.digest,
            spec.fingerprint,
            mode,
            state.gen,
            dst,
            spec.remove,
            tuple(staged),
            attempt.id,
            attempt.deadline + self.settings.clock_margin_seconds,
        )

    def _roll_forward(self, where: Where, state: State, attempt: Attempt) -> CommitResult:
        """Make a claimed intent visible, record it, clear it. Every step may be repeated."""
        p = state.pending
        assert p is not None
        result = self._result(where, p.op_id, p.dst, [s.name for s in p.add], p.remove)
        try:
            self._apply(where, state, p, attempt)
            self._guard(attempt)
            self._table.put(self._op_item(where, p, result))
            self._guard(attempt)
            self._save(where, state.after(p), state.version)
        except ConditionFailed:
            # Our claim was taken over or our finalise landed without its ack. Either way the
            # change is visible and recorded, and whoever holds the claim finishes the same intent.
            pass
        except Exception as exc:
            self._release(where, state, attempt, exc)
            raise
        return result

    def _apply(self, where: Where, state: State, p: Pending, attempt: Attempt) -> None:
        self._copies(where, state, p, attempt)
        if p.mode != "inplace":
            self._flip(where, p.dst, attempt)
            self._retire(where, p, attempt)

    def _copies(self, where: Where, state: State, p: Pending, attempt: Attempt) -> None:
        """In place: the one copy is the instant readers see the file. New generation: fill gen=dst."""
        ds, path = where.ref.dataset, where.path
        if p.mode == "newgen":
            for name in sorted(set(state.files) - set(p.remove)):
                self._copy(lake.file_key(ds, path, p.src, name), lake.file_key(ds, path, p.dst, name), attempt)
        if p.mode in ("inplace", "newgen"):
            for s in p.add:
                self._copy(s.staged, lake.file_key(ds, path, p.dst, s.name), attempt)

    def _retire(self, where: Where, p: Pending, attempt: Attempt) -> None:
        """After a flip to a new generation: the old one is garbage once the grace period is over."""
        if p.mode == "newgen" and p.src:
            due = self._clock.now() + self.settings.grace_seconds
            self._guard(attempt)
            self._put_gc(due, refs=[where.ref], prefixes=[lake.generation_prefix(where.ref.dataset, where.path, p.src)])

    def _roll_forward_many(
        self, claimed: Sequence[tuple[int, Where, State]], attempt: Attempt, workers: int
    ) -> dict[int, CommitResult | Exception]:
        """`_roll_forward` of many claimed intents, with batched catalog, record and finalise requests.

        Each partition's steps keep their order (copies, flip, record, finalise); a partition that
        fails releases its claim and drops out, the others go on.
        """
        out: dict[int, CommitResult | Exception] = {}

        def fail(entry: tuple[int, Where, State], exc: Exception) -> None:
            i, where, state = entry
            self._release(where, state, attempt, exc)
            out[i] = exc

        def copies(entry: tuple[int, Where, State]) -> None:
            _, where, state = entry
            assert state.pending is not None
            self._copies(where, state, state.pending, attempt)

        for entry, done in zip(claimed, self._each(copies, claimed, workers), strict=True):
            if isinstance(done, Exception):
                fail(entry, done)
        flips = [e for e in claimed if e[0] not in out and e[2].pending and e[2].pending.mode != "inplace"]
        for entry, exc in self._flip_many(flips, attempt):
            fail(entry, exc)
        ok = [e for e in claimed if e[0] not in out]
        results = {}
        for i, where, state in ok:
            p = state.pending
            assert p is not None
            results[i] = self._result(where, p.op_id, p.dst, [s.name for s in p.add], p.remove)
        try:
            self._guard(attempt)
            self._table.put_many([self._op_item(w, s.pending, results[i]) for i, w, s in ok])  # type: ignore[arg-type]
        except Exception as exc:
            for entry in ok:
                fail(entry, exc)
            return out

        def finalise(entry: tuple[int, Where, State]) -> None:
            _, where, state = entry
            assert state.pending is not None
            self._guard(attempt)
            with contextlib.suppress(ConditionFailed):  # taken over, or landed without its ack: see _roll_forward
                self._save(where, state.after(state.pending), state.version)

        for entry, done in zip(ok, self._each(finalise, ok, workers), strict=True):
            if isinstance(done, Exception):
                fail(entry, done)
            else:
                out[entry[0]] = results[entry[0]]
        return out

    def _flip_many(
        self, entries: Sequence[tuple[int, Where, State]], attempt: Attempt
    ) -> list[tuple[tuple[int, Where, State], Exception]]:
        """`_flip` (and `_retire`) for many partitions: one location read and one create per 100 new
        partitions per dataset; anything but "already there" or "created now" takes `_flip`'s path."""
        failed: list[tuple[tuple[int, Where, State], Exception]] = []
        by_dataset: dict[str, list[tuple[int, Where, State]]] = {}
        for entry in entries:
            by_dataset.setdefault(entry[1].ref.dataset, []).append(entry)
        for group in by_dataset.values():
            ds = group[0][1].dataset
            want = {e[0]: self._location(e[1], e[2].pending.dst) for e in group}  # type: ignore[union-attr]
            try:
                self._guard(attempt)
                have = self._catalog.locations(ds, [e[1].values for e in group])
                new = [e for e, loc in zip(group, have, strict=True) if loc is None]
                created: set[int] = set()
                if new:
                    self._guard(attempt)
                    made = self._catalog.create_many(ds, [(e[1].values, want[e[0]]) for e in new])
                    created = {e[0] for e, ok in zip(new, made, strict=True) if ok}
            except Exception as exc:
                failed += [(e, exc) for e in group]
                continue
            for entry, loc in zip(group, have, strict=True):
                i, where, state = entry
                assert state.pending is not None
                try:
                    if loc != want[i] and i not in created:
                        self._flip(where, state.pending.dst, attempt)
                    self._retire(where, state.pending, attempt)
                except Exception as exc:
                    failed.append((entry, exc))
        return failed

    def _flip(self, where: Where, gen: int, attempt: Attempt) -> None:
        """Point the Glue partition at `gen` (creating it on first commit); never move it backwards."""
        want = self._location(where, gen)
        self._guard(attempt)
        have = self._catalog.location(where.dataset, where.values)
        if have == want:
            return
        if have is None:
            self._guard(attempt)
            if self._catalog.create(where.dataset, where.values, want):
                return
            have = self._catalog.location(where.dataset, where.values)
            if have == want:
                return
        have_gen = lake.generation_of(have or "", self.bucket, where.ref.dataset, where.path)
        if have_gen is None or have_gen > gen:
            raise CatalogMismatch(f"{where.pk}: Glue location {have!r} is not generation <= {gen} of this partition")
        self._guard(attempt)
        self._catalog.set_location(where.dataset, where.values, want)

    def _copy(self, src: str, dst: str, attempt: Attempt) -> None:
        self._guard(attempt)
        try:
            self._store.copy(src, dst)
        except ObjectNotFound:
            if self._store.stat(dst) is None:  # a source may be gone only if an earlier claimant copied it
                raise MissingObject(f"cannot commit {dst!r}: its source {src!r} is gone") from None

    def _take_over(self, where: Where, state: State, attempt: Attempt) -> State | None:
        """Claim an intent whose claimant is past its deadline (it can no longer act)."""
        assert state.pending is not None
        expires = attempt.deadline + self.settings.clock_margin_seconds
        pending = replace(state.pending, attempt=attempt.id, expires=expires)
        try:
            return self._save(where, replace(state, pending=pending), state.version)
        except ConditionFailed:
            return None

    def _release(self, where: Where, state: State, attempt: Attempt, exc: Exception) -> None:
        """After a handled failure, shorten our claim to the margin any request of ours may still need."""
        assert state.pending is not None
        expires = min(state.pending.expires, self._clock.now() + self.settings.clock_margin_seconds)
        try:
            self._save(where, replace(state, pending=replace(state.pending, expires=expires)), state.version)
        except Exception as release_error:
            exc.add_note(f"releasing the claim of {where.pk} failed too ({release_error!r}); it expires by itself")

    def _wait(self, where: Where, p: Pending, waited: float, attempt: Attempt) -> float:
        delay = min(1.0, max(0.05, waited))
        if waited + delay > self.settings.busy_wait_seconds or self._clock.now() + delay >= attempt.deadline:
            raise PartitionBusy(f"{where.pk}: op {p.op_id!r} holds the partition until {p.expires:.0f}")
        self._clock.sleep(delay)
        return waited + delay

    # -- cleanup --------------------------------------------------------------------------------
    def cleanup(self, now: float | None = None, *, deadline: float | None = None) -> CleanupReport:
        """Delete (every version of) what became garbage before `now`, settling crashed commits first.

        Run it on a schedule much shorter than erasure_window - grace; `overdue` reports a breach.
        """
        attempt = self._attempt(deadline)
        now = self._clock.now() if now is None else now
        report = CleanupReport()
        for item in self._table.query_until(GC_PK, f"{int(now * 1000):015d}~"):
            if self._clock.now() >= attempt.deadline:
                report.complete = False
                break
            body = json.loads(str(item["body"]))
            refs = [PartitionRef.from_json(r) for r in body.get("refs") or ([body["ref"]] if body.get("ref") else [])]
            known = [ref for ref in refs if ref.dataset in self._datasets]
            if not all(self._settle(self._where(ref), attempt) for ref in known):
                report.postponed += 1
                continue
            for prefix in body["prefixes"]:
                self._guard(attempt)
                report.objects_deleted += self._store.purge_prefix(prefix)
            for key in body["keys"]:
                self._guard(attempt)
                report.objects_deleted += self._store.purge(key)
            self._table.delete(GC_PK, str(item["sk"]))
            lag = now - body["due"]
            report.entries += 1
            report.max_lag_seconds = max(report.max_lag_seconds, lag)
            report.overdue += int(lag > self.settings.erasure_window_seconds - self.settings.grace_seconds)
        return report

    def _settle(self, where: Where, attempt: Attempt) -> bool:
        """Finish a crashed commit of the partition and repair its catalog; False if one is in flight."""
        state = self._load(where)
        p = state.pending
        if p is not None:
            if p.expires >= self._clock.now():
                return False
            claimed = self._take_over(where, state, attempt)
            if claimed is None:
                return False
            self._roll_forward(where, claimed, attempt)
            state = self._load(where)
        if state.gen and not self._catalog_ok(where, state.gen):
            self.reconcile(where.ref, deadline=attempt.deadline)
        return True

    # -- small helpers --------------------------------------------------------------------------
    def _where(self, ref: PartitionRef) -> Where:
        ds = self._datasets.get(ref.dataset)
        if ds is None:
            raise CommitError(f"unknown dataset {ref.dataset!r}")
        if not ds.partitioning:
            raise CommitError(f"dataset {ref.dataset!r} is not partitioned; commits work on partitions")
        return Where(ref, ds, lake.partition_path(ds.partition_names, ref.values))

    def _staging_key(self, ref: PartitionRef, op_id: str, name: str) -> str:
        where = self._where(ref)
        return lake.staging_key(ref.dataset, where.path, lake.op_digest(op_id), uuid.uuid4().hex[:16], name)

    def _each(self, fn: Callable[[X], T], items: Iterable[X], workers: int) -> list[T | Exception]:
        """fn over items, `workers` at a time; each item's Exception is returned in its place."""
        todo = list(items)

        def run(i: X) -> T | Exception:
            try:
                return fn(i)
            except Exception as exc:
                return exc

        if workers <= 1 or len(todo) <= 1:
            return [run(i) for i in todo]
        return list(_pool(workers).map(run, todo))

    def _attempt(self, deadline: float | None) -> Attempt:
        latest = self._clock.now() + self.settings.max_op_seconds
        return Attempt(uuid.uuid4().hex, latest if deadline is None else min(deadline, latest))

    def _guard(self, attempt: Attempt) -> None:
        if self._clock.now() >= attempt.deadline:
            raise DeadlineExceeded(f"attempt {attempt.id} reached its deadline")

    def _stat_staged(self, where: Where, spec: Spec) -> list[Staged]:
        """Check staged files before the intent: a pending commit must never wait for a missing file."""
        staged = []
        # a staged key is purged `grace` after its reservation (at most one attempt before the write);
        # it must stay until this attempt's claim has certainly ended
        s = self.settings
        oldest = self._clock.now() - (s.grace_seconds - 2 * s.max_op_seconds - s.clock_margin_seconds)
        prefix = f"{lake.STAGING_ROOT}{where.ref.dataset}/{where.path}/{spec.digest}/"
        for name, f in zip(spec.names, spec.add, strict=True):
            if not f.staged_key.startswith(prefix):
                raise ValueError(f"{f.staged_key!r} was not reserved for op {spec.op_id!r} (use reserve_staging)")
            stat = self._staged_here.pop(f.staged_key, None) or self._store.stat(f.staged_key)
            if stat is None:
                raise MissingObject(f"staged file {f.staged_key!r} does not exist")
            if stat.modified < oldest:
                raise MissingObject(f"staged file {f.staged_key!r} is about to be purged; stage it again")
            staged.append(Staged(name, f.staged_key, f.rows, stat.size))
        return staged

    def _load(self, where: Where) -> State:
        return State.from_item(self._table.get(where.pk, STATE_SK))

    def _save(self, where: Where, state: State, expected: int | None) -> State:
        self._table.put_if_version(self._state_item(where, state, expected), expected)
        return replace(state, version=(expected or 0) + 1)

    def _state_item(self, where: Where, state: State, expected: int | None) -> Item:
        return {"pk": where.pk, "sk": STATE_SK, "version": (expected or 0) + 1, "body": state.to_body()}

    def _load_many(self, wheres: Sequence[Where]) -> list[State]:
        items = self._table.get_many([(w.pk, STATE_SK) for w in wheres])
        return [State.from_item(items.get((w.pk, STATE_SK))) for w in wheres]

    def _op_records(self, jobs: Sequence[tuple[Where, Spec]]) -> list[CommitResult | Exception | None]:
        items = self._table.get_many([(w.pk, OP_SK_PREFIX + spec.digest) for w, spec in jobs])
        found: list[CommitResult | Exception | None] = []
        for where, spec in jobs:
            try:
                found.append(self._recorded(where, spec, items.get((where.pk, OP_SK_PREFIX + spec.digest))))
            except OpIdReused as exc:
                found.append(exc)
        return found

    def _op_record(self, where: Where, spec: Spec) -> CommitResult | None:
        return self._recorded(where, spec, self._table.get(where.pk, OP_SK_PREFIX + spec.digest))

    def _recorded(self, where: Where, spec: Spec, item: Item | None) -> CommitResult | None:
        if item is None:
            return None
        body = json.loads(str(item["body"]))
        if body["fingerprint"] != spec.fingerprint:
            raise OpIdReused(f"{where.pk}: op {spec.op_id!r} was committed with other arguments")
        return CommitResult.from_json(body["result"], replayed=True)

    def _op_item(self, where: Where, p: Pending, result: CommitResult) -> Item:
        body = json.dumps({"fingerprint": p.fingerprint, "result": result.to_json()})
        expires = int(self._clock.now() + self.settings.op_record_ttl_seconds)
        return {"pk": where.pk, "sk": OP_SK_PREFIX + p.digest, "body": body, "expires_at": expires}

    def _put_gc(
        self,
        due: float,
        *,
        refs: Sequence[PartitionRef] = (),
        keys: Sequence[str] = (),
        prefixes: Sequence[str] = (),
    ) -> None:
        """A garbage entry: cleanup settles every partition in `refs`, then purges `keys` and `prefixes`."""
        body = {"due": due, "refs": [r.to_json() for r in refs], "keys": list(keys), "prefixes": list(prefixes)}
        sk = f"{int(due * 1000):015d}#{uuid.uuid4().hex}"
        self._table.put({"pk": GC_PK, "sk": sk, "body": json.dumps(body)})

    def _catalog_ok(self, where: Where, gen: int) -> bool:
        return self._catalog.location(where.dataset, where.values) == self._location(where, gen)

    def _location(self, where: Where, gen: int) -> str:
        return lake.s3_uri(self.bucket, lake.generation_prefix(where.ref.dataset, where.path, gen))

    def _result(
        self, where: Where, op_id: str, gen: int, added: Sequence[str], removed: Sequence[str], replayed: bool = False
    ) -> CommitResult:
        return CommitResult(op_id, gen, self._location(where, gen), tuple(added), tuple(removed), replayed)


def _unique_files(files: Sequence[NewFile]) -> tuple[NewFile, ...]:
    if len({f.name for f in files}) != len(files):
        raise ValueError("files to add must have distinct names")
    if any(f.rows < 0 for f in files):
        raise ValueError("row counts cannot be negative")
    return tuple(files)


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
os.register_at_fork(after_in_child=_POOLS.clear)  # a forked child has none of the parent's threads


def _pool(workers: int) -> ThreadPoolExecutor:
    """One thread pool per size for the process, reused by every committer and call: its threads keep
    their AWS clients (contracts.aws caches one per thread), which cost more to build than a request."""
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"commits-{workers}")
        return _POOLS[workers]


def _raise_first(outcomes: Sequence[object]) -> None:
    """Raise the first exception among outcomes, the others as notes (each partition was tried)."""
    errors = [o for o in outcomes if isinstance(o, Exception)]
    if errors:
        first = errors[0]
        for other in errors[1:6]:
            first.add_note(f"also failed: {other!r}")
        if len(errors) > 6:
            first.add_note(f"... and {len(errors) - 6} more")
        raise first
