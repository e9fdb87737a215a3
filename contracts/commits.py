"""Partition commits: how transform (append), compaction and erasure (replace) change one partition.

Readers see exactly the objects under the Glue partition's location, which is one *generation*
prefix `<dataset>/<partition>/gen=<n>/` (see contracts.lake). Every change goes through one item
per partition in the state table, written only with conditional puts:

1. *intent*: the writer records what it will do (files to add from staging, names to remove, the
   target generation) together with a *claim* (its attempt id, valid until its deadline plus a
   margin). While an intent is pending nobody else starts a change, so commits are serialised.
2. *roll forward*: the claimant makes the change visible in one step - an append of one file is one
   copy into the live generation; anything else builds generation n+1 (copy survivors, copy new
   files) and flips the Glue location - then records the op and clears the intent.
A crashed attempt leaves its intent; once the claim expires, any writer, a retry or `cleanup` takes
it over and rolls it forward from the start (every step is idempotent). Only the claimant touches
the catalog, so a stale flip cannot land after a newer one (claims outlive their holder's deadline,
and no request of an attempt runs past its deadline). The full argument and the cost of each
commit are in docs/design/partition-commits.md.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol

from botocore.exceptions import ClientError

from contracts import aws, lake
from contracts.datasets import Dataset, load_datasets

Item = dict[str, str | int]
STATE_SK = "state"
GC_PK = "gc"
OP_SK_PREFIX = "op#"


# -- errors -----------------------------------------------------------------------------------------
class CommitError(RuntimeError):
    """A commit cannot proceed; the message names the partition and the reason."""


class ReplaceConflict(CommitError):
    """Files to replace are no longer current (another replace won): re-plan with a new op id."""


class PartitionBusy(CommitError):
    """Another attempt holds the partition's claim; retrying later is safe."""


class DeadlineExceeded(CommitError):
    """The attempt reached its deadline and stopped before its next request; a retry completes it."""


class OpIdReused(CommitError):
    """The op id was already used with different arguments; op ids must name one operation."""


class MissingObject(CommitError):
    """A file a pending commit needs is gone (staged file purged or deleted outside commits)."""


class CatalogMismatch(CommitError):
    """The Glue partition points somewhere commits did not put it; fix it by hand, never silently."""


class ConditionFailed(Exception):
    """Backend signal: a conditional state-table write found another version."""


class ObjectNotFound(Exception):
    """Backend signal: the source of a copy does not exist."""


# -- public values ----------------------------------------------------------------------------------
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


# -- backends ---------------------------------------------------------------------------------------
class ObjectStore(Protocol):
    """The lake bucket. Keys are relative to it; deleting always removes every version."""

    def put(self, key: str, data: bytes) -> None: ...
    def stat(self, key: str) -> ObjectStat | None: ...
    def copy(self, src: str, dst: str) -> None: ...  # raises ObjectNotFound
    def purge(self, key: str) -> int: ...
    def purge_prefix(self, prefix: str) -> int: ...


class StateTable(Protocol):
    """A pk/sk table with strongly consistent reads and version-conditional puts."""

    def get(self, pk: str, sk: str) -> Item | None: ...
    def put(self, item: Item) -> None: ...
    def put_if_version(self, item: Item, expected: int | None) -> None: ...  # raises ConditionFailed
    def query_until(self, pk: str, sk_max: str) -> Iterable[Item]: ...
    def delete(self, pk: str, sk: str) -> None: ...


class Catalog(Protocol):
    """Glue partitions: the location is the only thing commits change after creation."""

    def location(self, dataset: Dataset, values: Sequence[str]) -> str | None: ...
    def create(self, dataset: Dataset, values: Sequence[str], location: str) -> bool: ...
    def set_location(self, dataset: Dataset, values: Sequence[str], location: str) -> None: ...


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# -- the state item ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Staged:
    name: str  # committed name
    staged: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class _Pending:
    """A committed intent: self-contained, so any claimant can roll it forward."""

    op_id: str
    digest: str
    fingerprint: str
    mode: str  # "inplace" (copy one file into the live generation) | "newgen" | "sync" (catalog only)
    src: int
    dst: int
    remove: tuple[str, ...]
    add: tuple[_Staged, ...]
    attempt: str
    expires: float

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in ("op_id", "digest", "fingerprint", "mode", "src", "dst", "attempt")}
        return data | {
            "expires": self.expires,
            "remove": list(self.remove),
            "add": [[s.name, s.staged, s.rows, s.bytes] for s in self.add],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> _Pending:
        add = tuple(_Staged(*entry) for entry in d["add"])
        rest = {k: v for k, v in d.items() if k not in ("add", "remove")}
        return cls(**rest, remove=tuple(d["remove"]), add=add)


@dataclass(frozen=True)
class _State:
    version: int | None  # None: no item yet
    gen: int = 0
    files: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # name -> (rows, bytes)
    pending: _Pending | None = None

    def to_body(self) -> str:
        files = {n: list(v) for n, v in sorted(self.files.items())}
        pending = self.pending.to_json() if self.pending else None
        return json.dumps({"gen": self.gen, "files": files, "pending": pending}, separators=(",", ":"))

    @classmethod
    def from_item(cls, item: Item | None) -> _State:
        if item is None:
            return cls(version=None)
        body = json.loads(str(item["body"]))
        pending = _Pending.from_json(body["pending"]) if body["pending"] else None
        files = {n: (int(r), int(b)) for n, (r, b) in body["files"].items()}
        return cls(int(item["version"]), body["gen"], files, pending)

    def after(self, p: _Pending) -> _State:
        """The state once `p` is applied: the only place a manifest changes."""
        files = {n: v for n, v in self.files.items() if n not in p.remove}
        files.update({s.name: (s.rows, s.bytes) for s in p.add})
        return _State(self.version, p.dst, files, None)


@dataclass(frozen=True)
class _Spec:
    """What the caller asked for, normalised; the fingerprint detects an op id reused for another op."""

    op_id: str
    kind: str  # "append" | "replace" | "sync"
    remove: tuple[str, ...]
    add: tuple[NewFile, ...]

    @property
    def digest(self) -> str:
        return lake.op_digest(self.op_id)

    @property
    def fingerprint(self) -> str:
        shape = {"kind": self.kind, "remove": sorted(self.remove), "add": [[f.name, f.rows] for f in self.add]}
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:32]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(lake.committed_name(self.digest, i) for i in range(len(self.add)))


@dataclass(frozen=True)
class _Attempt:
    id: str
    deadline: float


@dataclass(frozen=True)
class _Where:
    """A validated ref with everything needed to name its keys and its catalog partition."""

    ref: PartitionRef
    dataset: Dataset
    path: str

    @property
    def pk(self) -> str:
        return f"p#{self.ref.dataset}#{self.path}"

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self.ref.values[n] for n in self.dataset.partition_names)


# -- the committer ----------------------------------------------------------------------------------
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
        where = self._where(ref)
        key = lake.staging_key(ref.dataset, where.path, lake.op_digest(op_id), uuid.uuid4().hex[:16], name)
        self._put_gc(self._clock.now() + self.settings.grace_seconds, ref=ref, keys=[key])
        return key

    def stage(self, ref: PartitionRef, op_id: str, name: str, data: bytes, rows: int) -> NewFile:
        """Stage bytes (e.g. a Parquet file written to a buffer) for a later `append`/`replace`."""
        key = self.reserve_staging(ref, op_id, name)
        self._store.put(key, data)
        return NewFile(name, key, rows)

    # -- commits --------------------------------------------------------------------------------
    def append(
        self, ref: PartitionRef, files: Sequence[NewFile], op_id: str, *, deadline: float | None = None
    ) -> CommitResult:
        """Add staged files atomically; a retry with the same op id never adds them twice."""
        if not files:
            raise ValueError("append needs at least one file")
        return self._commit(self._where(ref), _Spec(op_id, "append", (), _unique_files(files)), deadline)

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
        return self._commit(self._where(ref), _Spec(op_id, "replace", tuple(remove), _unique_files(add)), deadline)

    def reconcile(self, ref: PartitionRef, *, deadline: float | None = None) -> CommitResult | None:
        """Point the Glue partition back at the committed generation (e.g. after it was deleted)."""
        where = self._where(ref)
        state = self._load(where)
        if state.gen == 0 or (state.pending is None and self._catalog_ok(where, state.gen)):
            return None
        return self._commit(where, _Spec(f"sync-{uuid.uuid4().hex}", "sync", (), ()), deadline)

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

    # -- the protocol ---------------------------------------------------------------------------
    def _commit(self, where: _Where, spec: _Spec, deadline: float | None) -> CommitResult:
        attempt = self._attempt(deadline)
        staged: list[_Staged] | None = None
        if not spec.add:  # nothing staged, so nothing registered: make sure cleanup settles a crash
            self._put_gc(self._clock.now() + self.settings.grace_seconds, ref=where.ref)
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
        self, where: _Where, state: _State, spec: _Spec, staged: Sequence[_Staged], attempt: _Attempt
    ) -> _Pending | None:
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
        return _Pending(
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

    def _roll_forward(self, where: _Where, state: _State, attempt: _Attempt) -> CommitResult:
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

    def _apply(self, where: _Where, state: _State, p: _Pending, attempt: _Attempt) -> None:
        ds, path = where.ref.dataset, where.path
        if p.mode == "inplace":
            for s in p.add:  # one file: the copy is the instant readers see it
                self._copy(s.staged, lake.file_key(ds, path, p.dst, s.name), attempt)
            return
        if p.mode == "newgen":
            for name in sorted(set(state.files) - set(p.remove)):
                self._copy(lake.file_key(ds, path, p.src, name), lake.file_key(ds, path, p.dst, name), attempt)
            for s in p.add:
                self._copy(s.staged, lake.file_key(ds, path, p.dst, s.name), attempt)
        self._flip(where, p.dst, attempt)
        if p.mode == "newgen" and p.src:
            due = self._clock.now() + self.settings.grace_seconds
            self._guard(attempt)
            self._put_gc(due, ref=where.ref, prefixes=[lake.generation_prefix(ds, path, p.src)])

    def _flip(self, where: _Where, gen: int, attempt: _Attempt) -> None:
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

    def _copy(self, src: str, dst: str, attempt: _Attempt) -> None:
        self._guard(attempt)
        try:
            self._store.copy(src, dst)
        except ObjectNotFound:
            if self._store.stat(dst) is None:  # a source may be gone only if an earlier claimant copied it
                raise MissingObject(f"cannot commit {dst!r}: its source {src!r} is gone") from None

    def _take_over(self, where: _Where, state: _State, attempt: _Attempt) -> _State | None:
        """Claim an intent whose claimant is past its deadline (it can no longer act)."""
        assert state.pending is not None
        expires = attempt.deadline + self.settings.clock_margin_seconds
        pending = replace(state.pending, attempt=attempt.id, expires=expires)
        try:
            return self._save(where, replace(state, pending=pending), state.version)
        except ConditionFailed:
            return None

    def _release(self, where: _Where, state: _State, attempt: _Attempt, exc: Exception) -> None:
        """After a handled failure, shorten our claim to the margin any request of ours may still need."""
        assert state.pending is not None
        expires = min(state.pending.expires, self._clock.now() + self.settings.clock_margin_seconds)
        try:
            self._save(where, replace(state, pending=replace(state.pending, expires=expires)), state.version)
        except Exception as release_error:
            exc.add_note(f"releasing the claim of {where.pk} failed too ({release_error!r}); it expires by itself")

    def _wait(self, where: _Where, p: _Pending, waited: float, attempt: _Attempt) -> float:
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
            ref = PartitionRef.from_json(body["ref"]) if body["ref"] else None
            if ref and ref.dataset in self._datasets and not self._settle(self._where(ref), attempt):
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

    def _settle(self, where: _Where, attempt: _Attempt) -> bool:
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
    def _where(self, ref: PartitionRef) -> _Where:
        ds = self._datasets.get(ref.dataset)
        if ds is None:
            raise CommitError(f"unknown dataset {ref.dataset!r}")
        if not ds.partitioning:
            raise CommitError(f"dataset {ref.dataset!r} is not partitioned; commits work on partitions")
        return _Where(ref, ds, lake.partition_path(ds.partition_names, ref.values))

    def _attempt(self, deadline: float | None) -> _Attempt:
        latest = self._clock.now() + self.settings.max_op_seconds
        return _Attempt(uuid.uuid4().hex, latest if deadline is None else min(deadline, latest))

    def _guard(self, attempt: _Attempt) -> None:
        if self._clock.now() >= attempt.deadline:
            raise DeadlineExceeded(f"attempt {attempt.id} reached its deadline")

    def _stat_staged(self, where: _Where, spec: _Spec) -> list[_Staged]:
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
            stat = self._store.stat(f.staged_key)
            if stat is None:
                raise MissingObject(f"staged file {f.staged_key!r} does not exist")
            if stat.modified < oldest:
                raise MissingObject(f"staged file {f.staged_key!r} is about to be purged; stage it again")
            staged.append(_Staged(name, f.staged_key, f.rows, stat.size))
        return staged

    def _load(self, where: _Where) -> _State:
        return _State.from_item(self._table.get(where.pk, STATE_SK))

    def _save(self, where: _Where, state: _State, expected: int | None) -> _State:
        version = (expected or 0) + 1
        item: Item = {"pk": where.pk, "sk": STATE_SK, "version": version, "body": state.to_body()}
        self._table.put_if_version(item, expected)
        return replace(state, version=version)

    def _op_record(self, where: _Where, spec: _Spec) -> CommitResult | None:
        item = self._table.get(where.pk, OP_SK_PREFIX + spec.digest)
        if item is None:
            return None
        body = json.loads(str(item["body"]))
        if body["fingerprint"] != spec.fingerprint:
            raise OpIdReused(f"{where.pk}: op {spec.op_id!r} was committed with other arguments")
        return CommitResult.from_json(body["result"], replayed=True)

    def _op_item(self, where: _Where, p: _Pending, result: CommitResult) -> Item:
        body = json.dumps({"fingerprint": p.fingerprint, "result": result.to_json()})
        expires = int(self._clock.now() + self.settings.op_record_ttl_seconds)
        return {"pk": where.pk, "sk": OP_SK_PREFIX + p.digest, "body": body, "expires_at": expires}

    def _put_gc(
        self, due: float, *, ref: PartitionRef | None = None, keys: Sequence[str] = (), prefixes: Sequence[str] = ()
    ) -> None:
        body = {"due": due, "ref": ref.to_json() if ref else None, "keys": list(keys), "prefixes": list(prefixes)}
        sk = f"{int(due * 1000):015d}#{uuid.uuid4().hex}"
        self._table.put({"pk": GC_PK, "sk": sk, "body": json.dumps(body)})

    def _catalog_ok(self, where: _Where, gen: int) -> bool:
        return self._catalog.location(where.dataset, where.values) == self._location(where, gen)

    def _location(self, where: _Where, gen: int) -> str:
        return lake.s3_uri(self.bucket, lake.generation_prefix(where.ref.dataset, where.path, gen))

    def _result(
        self, where: _Where, op_id: str, gen: int, added: Sequence[str], removed: Sequence[str], replayed: bool = False
    ) -> CommitResult:
        return CommitResult(op_id, gen, self._location(where, gen), tuple(added), tuple(removed), replayed)


def _unique_files(files: Sequence[NewFile]) -> tuple[NewFile, ...]:
    if len({f.name for f in files}) != len(files):
        raise ValueError("files to add must have distinct names")
    if any(f.rows < 0 for f in files):
        raise ValueError("row counts cannot be negative")
    return tuple(files)


# -- AWS backends -----------------------------------------------------------------------------------
def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ObjectStore:
    """The versioned lake bucket: purging lists every version and delete marker and deletes them."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def put(self, key: str, data: bytes) -> None:
        aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=data)

    def stat(self, key: str) -> ObjectStat | None:
        try:
            head = aws.client("s3").head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectStat(int(head["ContentLength"]), head["LastModified"].timestamp())

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy (objects up to 5 GB; lake files are at most 512 MB by contract)."""
        try:
            aws.client("s3").copy_object(Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": src})
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise ObjectNotFound(src) from exc
            raise

    def purge(self, key: str) -> int:
        return self._delete([v for v in self._versions(key) if v[0] == key])

    def purge_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError(f"prefix {prefix!r} must end with '/'")
        return self._delete(list(self._versions(prefix)))

    def _versions(self, prefix: str) -> Iterator[tuple[str, str]]:
        pages = aws.client("s3").get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                yield v["Key"], v["VersionId"]

    def _delete(self, versions: list[tuple[str, str]]) -> int:
        s3 = aws.client("s3")
        for i in range(0, len(versions), 1000):
            batch = [{"Key": k, "VersionId": v} for k, v in versions[i : i + 1000]]
            resp = s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            errors = resp.get("Errors", [])
            if errors:
                raise CommitError(f"s3://{self.bucket}: could not delete {len(errors)} versions: {errors[:3]}")
        return len(versions)


class DynamoStateTable:
    """The state table (pk S hash, sk S range, TTL on `expires_at`); items hold only strings and ints."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def get(self, pk: str, sk: str) -> Item | None:
        resp = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        return _from_dynamo(resp["Item"]) if "Item" in resp else None

    def put(self, item: Item) -> None:
        aws.client("dynamodb").put_item(TableName=self.table_name, Item=_to_dynamo(item))

    def put_if_version(self, item: Item, expected: int | None) -> None:
        if expected is None:
            cond: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            cond = {
                "ConditionExpression": "#v = :v",
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {":v": {"N": str(expected)}},
            }
        try:
            aws.client("dynamodb").put_item(TableName=self.table_name, Item=_to_dynamo(item), **cond)
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise ConditionFailed(f"{item['pk']}/{item['sk']}: version is not {expected}") from exc
            raise

    def query_until(self, pk: str, sk_max: str) -> Iterator[Item]:
        pages = (
            aws.client("dynamodb")
            .get_paginator("query")
            .paginate(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk AND sk <= :m",
                ExpressionAttributeValues={":pk": {"S": pk}, ":m": {"S": sk_max}},
                ConsistentRead=True,
            )
        )
        for page in pages:
            yield from (_from_dynamo(i) for i in page["Items"])

    def delete(self, pk: str, sk: str) -> None:
        aws.client("dynamodb").delete_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}})


def _to_dynamo(item: Item) -> dict[str, Any]:
    return {k: {"N": str(v)} if isinstance(v, int) else {"S": v} for k, v in item.items()}


def _from_dynamo(item: Mapping[str, Any]) -> Item:
    return {k: int(v["N"]) if "N" in v else v["S"] for k, v in item.items()}


_PARTITION_INPUT_KEYS = ("Values", "LastAccessTime", "StorageDescriptor", "Parameters", "LastAnalyzedTime")


class GlueCatalog:
    """Glue partitions of the table named like the dataset; a new partition copies the table's format."""

    def __init__(self, database: str) -> None:
        self.database = database

    def location(self, dataset: Dataset, values: Sequence[str]) -> str | None:
        try:
            part = aws.client("glue").get_partition(
                DatabaseName=self.database, TableName=dataset.name, PartitionValues=list(values)
            )
        except ClientError as exc:
            if _error_code(exc) == "EntityNotFoundException":
                return None
            raise
        return part["Partition"]["StorageDescriptor"].get("Location")

    def create(self, dataset: Dataset, values: Sequence[str], location: str) -> bool:
        """Register the partition with the table's columns and Parquet SerDe; False if it exists."""
        glue = aws.client("glue")
        table = glue.get_table(DatabaseName=self.database, Name=dataset.name)["Table"]
        sd = _partition_sd(table["StorageDescriptor"], location)
        try:
            glue.create_partition(
                DatabaseName=self.database,
                TableName=dataset.name,
                PartitionInput={"Values": list(values), "StorageDescriptor": sd},
            )
        except ClientError as exc:
            if _error_code(exc) == "AlreadyExistsException":
                return False
            raise
        return True

    def set_location(self, dataset: Dataset, values: Sequence[str], location: str) -> None:
        glue = aws.client("glue")
        part = glue.get_partition(DatabaseName=self.database, TableName=dataset.name, PartitionValues=list(values))
        data = {k: v for k, v in part["Partition"].items() if k in _PARTITION_INPUT_KEYS}
        data["StorageDescriptor"] = {**data["StorageDescriptor"], "Location": location}
        glue.update_partition(
            DatabaseName=self.database, TableName=dataset.name, PartitionValueList=list(values), PartitionInput=data
        )


def _partition_sd(table_sd: Mapping[str, Any], location: str) -> dict[str, Any]:
    """A partition's StorageDescriptor: the table's columns and formats (Parquet), its own location."""
    return {
        "Columns": table_sd.get("Columns", []),
        "Location": location,
        "InputFormat": table_sd.get("InputFormat", PARQUET_INPUT),
        "OutputFormat": table_sd.get("OutputFormat", PARQUET_OUTPUT),
        "SerdeInfo": table_sd.get("SerdeInfo") or {"SerializationLibrary": PARQUET_SERDE},
        "Compressed": table_sd.get("Compressed", False),
    }


PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
