"""The lake side of a run: list partitions, FIND per partition, REWRITE + commit, purge old generations.

Every change goes through the partition-commit protocol (`PartitionCommitter.replace`), so
transform appends and compaction on the same partition stay safe: a commit that lost a race raises
ReplaceConflict and the partition is planned again from the new manifest. The op id is derived
from the run, attempt, partition and the exact files replaced, so a retried task replays the
committed op instead of committing twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa

from contracts import aws
from contracts import lake as layout
from contracts.commits import (
    FileToStage,
    MissingObject,
    NewFile,
    PartitionCommitter,
    PartitionRef,
    PartitionState,
    ReplaceConflict,
)
from contracts.datasets import Dataset
from services.erasure.blobs import S3Blob
from services.erasure.find import FileProbe, FindStats, partition_may_match, probe
from services.erasure.rewrite import rewrite
from services.erasure.subjects import ColumnValues
from services.erasure.versions import versions

PROBE_THREADS = 8
#: PUTs of a partition's rewritten files at once (stage_many)
STAGE_THREADS = 4
MAX_REPLANS = 5
#: bytes of small files FIND fetched whole that a partition's hits keep for REWRITE (FileProbe.data);
#: past it the rest are fetched again, so a partition of many small matched files stays in memory bounds
HELD_BYTES = 64 << 20


class OutOfTime(RuntimeError):
    """The invocation's budget ends before the next file; progress is checkpointed, continue later."""


@dataclass(frozen=True)
class Partition:
    dataset: str
    values: Mapping[str, str]
    location: str

    @property
    def ref(self) -> PartitionRef:
        return PartitionRef(self.dataset, self.values)


def glue_partitions(database: str, dataset: Dataset) -> list[Partition]:
    """Every registered partition of the dataset's table with its current location."""
    out = []
    pages = aws.client("glue").get_paginator("get_partitions").paginate(DatabaseName=database, TableName=dataset.name)
    for page in pages:
        for p in page["Partitions"]:
            values = dict(zip(dataset.partition_names, p["Values"], strict=True))
            out.append(Partition(dataset.name, values, p["StorageDescriptor"].get("Location", "")))
    return sorted(out, key=lambda p: tuple(p.values.values()))


def candidate_partitions(
    database: str, dataset: Dataset, columns: Sequence[ColumnValues]
) -> tuple[list[Partition], int]:
    """(partitions that may hold a subject, partitions pruned by their values)."""
    parts = glue_partitions(database, dataset)
    kept = [p for p in parts if partition_may_match(dataset, p.values, columns)]
    return kept, len(parts) - len(kept)


_POOL: list[ThreadPoolExecutor] = []


def probe_pool() -> ThreadPoolExecutor:
    """One pool per process: its threads keep their boto3 clients (creating one costs ~0.1 s)."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="probe"))
    return _POOL[0]


@dataclass
class FileHit:
    name: str
    key: str
    bytes: int
    probe: FileProbe
    error: str | None = None  # the file could not be read: reported, never taken as "no match"


def _probe_each(bucket: str, files: Sequence[tuple[str, str, int]], columns: Sequence[ColumnValues]) -> list[FileHit]:
    """Every file's probe, concurrently (I/O bound), in input order; an unreadable file is a result
    with `error` (value-free: the error's type)."""

    def one(f: tuple[str, str, int]) -> FileHit:
        name, key, size = f
        try:
            return FileHit(name, key, size, probe(S3Blob(bucket, key, size), columns))
        except Exception as exc:  # recorded: verification fails the request on it
            return FileHit(name, key, size, FileProbe(), error=f"unreadable ({type(exc).__name__})")

    results = list(map(one, files)) if len(files) < 2 else list(probe_pool().map(one, files))
    held = 0
    for r in results:
        if r.probe.data is not None:
            held += len(r.probe.data)
            if held > HELD_BYTES:
                r.probe.data = None
    return results


def _summed(results: Sequence[FileHit]) -> tuple[list[FileHit], FindStats]:
    stats = FindStats()
    for r in results:
        stats.add(r.probe.stats)
    return [r for r in results if r.probe.matched or r.error], stats


def probe_files(
    bucket: str, files: Sequence[tuple[str, str, int]], columns: Sequence[ColumnValues]
) -> tuple[list[FileHit], FindStats]:
    """Probe files (name, key, size) concurrently (I/O bound); matched or unreadable files in input
    order, and summed stats. An unreadable file is a result with `error` (value-free: the error's type)."""
    return _summed(_probe_each(bucket, files, columns))


class Found(NamedTuple):
    """FIND's answer for one partition: files holding a subject's row (unreadable ones left out:
    verification reads them again and fails the request if they still cannot be read), what was read,
    and the manifest version probed."""

    hits: list[FileHit]
    stats: FindStats
    version: int


def find_in_partition(
    committer: PartitionCommitter, part: Partition, columns: Sequence[ColumnValues]
) -> Found:
    """Files of the partition holding a subject's row (see `Found`)."""
    return find_in_partitions(committer, [part], columns)[0]


def find_in_partitions(
    committer: PartitionCommitter, parts: Sequence[Partition], columns: Sequence[ColumnValues]
) -> list[Found]:
    """`find_in_partition` of several partitions of one dataset at once: their manifests are read and
    all their files probed concurrently. FIND on S3 is latency-bound, and a day-partitioned lake has
    thousands of partitions of one small file: one partition at a time would be one request at a time."""
    if len(parts) > 1:
        states = list(probe_pool().map(lambda p: committer.current(p.ref), parts))
    else:
        states = [committer.current(p.ref) for p in parts]
    return _probed(committer, states, [[(f.name, f.key, f.bytes) for f in state.files] for state in states], columns)


def _probed(committer: PartitionCommitter, states: Sequence[PartitionState],
            files: Sequence[Sequence[tuple[str, str, int]]], columns: Sequence[ColumnValues]) -> list[Found]:
    results = _probe_each(committer.bucket, [f for fs in files for f in fs], columns)
    out, at = [], 0
    for state, fs in zip(states, files, strict=True):
        hits, stats = _summed(results[at : at + len(fs)])
        out.append(Found([h for h in hits if not h.error], stats, state.version))
        at += len(fs)
    return out


@dataclass(frozen=True)
class Known:
    """What the run's FIND found in a partition: the files holding a subject, at a manifest version."""

    version: int
    names: Sequence[str]


def find_again(
    committer: PartitionCommitter, part: Partition, columns: Sequence[ColumnValues], known: Known | None
) -> Found:
    """The partition's hits for a task: when its manifest is still the version FIND read, only the
    files FIND found are probed (they must be read for the rewrite anyway); else the whole partition.
    A file appended since FIND changes the version, so it is never skipped."""
    if known is None:
        return find_in_partition(committer, part, columns)
    state = committer.current(part.ref)
    by_name = {f.name: f for f in state.files}
    unchanged = state.version == known.version and all(n in by_name for n in known.names)
    files = [by_name[n] for n in known.names] if unchanged else state.files
    return _probed(committer, [state], [[(f.name, f.key, f.bytes) for f in files]], columns)[0]


class Checkpoint:
    """Where a partition task keeps its progress between invocations (see worker.py)."""

    def load(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def save(self, data: dict[str, Any]) -> None:
        raise NotImplementedError


def op_id_for(prefix: str, names: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]
    return f"{prefix}:{digest}"


def _idx_keys(d: Mapping[int, int]) -> dict[str, int]:
    return {str(k): v for k, v in d.items()}


def _rewrite_hit(
    committer: PartitionCommitter, ref: PartitionRef, op_id: str, hit: FileHit, index: int,
    columns: Sequence[ColumnValues], personal: Sequence[str], salt: bytes,
) -> tuple[dict[str, Any], FileToStage | None]:
    """The file's outcome, and its bytes still to stage when it was rewritten in memory (`_stage_held`)."""
    name = f"erased-{index:04d}.parquet"
    held = hit.probe.source()  # the bytes FIND fetched (small files): no second download
    kwargs: dict[str, Any] = {"row_groups": hit.probe.matched_row_groups, "metadata": hit.probe.metadata,
                              "personal": personal, "salt": salt}
    staged, out_bytes, to_stage = None, 0, None
    if held is not None:  # small in, small out: written in memory, staged with the partition's others
        sink = pa.BufferOutputStream()
        with held:
            result = rewrite(held, lambda: sink, columns, **kwargs)
        if result.rows_out:
            data = sink.getvalue().to_pybytes()
            to_stage, out_bytes = FileToStage(ref, op_id, name, data, result.rows_out), len(data)
    else:  # streamed to S3 one row group at a time (memory: one row group)
        fs = aws.s3_filesystem()
        key = committer.reserve_staging(ref, op_id, name)
        with fs.open_input_file(f"{committer.bucket}/{hit.key}") as src:
            result = rewrite(src, lambda: fs.open_output_stream(f"{committer.bucket}/{key}"), columns, **kwargs)
        if result.rows_out:
            staged, out_bytes = key, fs.get_file_info(f"{committer.bucket}/{key}").size
    return {
        "name": hit.name, "key": hit.key, "bytes_in": hit.bytes, "rows_in": result.rows_in,
        "rows_removed": result.rows_removed, "rows_out": result.rows_out, "bytes_out": out_bytes,
        "bytes_copied": result.bytes_copied,  # of bytes_out, pages copied undecoded (splice.py)
        "whole_because": result.whole_because,  # else why every page was written again
        "staged_key": staged, "by_subject": _idx_keys(result.by_subject),
        "lineage": result.lineage, "row_groups_in": result.row_groups_in, "row_groups_out": result.row_groups_out,
        "fingerprints": sorted(result.fingerprints),
    }, to_stage


def _stage_held(committer: PartitionCommitter, held: list[tuple[dict[str, Any], FileToStage]]) -> None:
    """Stage the files rewritten in memory together: one garbage entry registers them all (stage_many),
    their PUTs go out in parallel and their sizes are known, so the commit needs no HEAD."""
    if not held:
        return
    staged = committer.stage_many([f for _, f in held], workers=STAGE_THREADS)
    for (record, _), new in zip(held, staged, strict=True):
        record["staged_key"] = new.staged_key
    held.clear()


def erase_partition(
    committer: PartitionCommitter,
    part: Partition,
    columns: Sequence[ColumnValues],
    *,
    op_prefix: str,
    checkpoint: Checkpoint,
    deadline: float,
    clock: Callable[[], float] = time.time,
    hook: Callable[[str], None] = lambda step: None,
    personal: Sequence[str] = (),
    salt: bytes = b"",
    known: Known | None = None,
) -> dict[str, Any]:
    """Rewrite every file of the partition holding a subject and commit them in one replace.

    `known` is what the run's FIND found there (`find_again`); a plan after a conflict probes the whole
    partition. Progress is checkpointed once the files are staged, and after each file streamed to S3
    (a big file is worth resuming from). Files rewritten in memory are staged together (`_stage_held`) and
    checkpointed with the partition: such a file costs less to rewrite than its checkpoint's PUT, so a
    crash before the partition is staged rewrites them again (same op id, same staged keys).
    Returns the outcome (JSON-able): files replaced (old key → new key, rows), rows per subject
    index, lineage of the erased rows, fingerprints of their other personal values (fingerprints.py),
    the generation committed and what FIND read.
    """
    ref = part.ref
    saved = checkpoint.load()
    if saved and saved.get("outcome"):
        return saved["outcome"]
    find_stats = FindStats()
    for _ in range(MAX_REPLANS):
        if saved and saved.get("staged_all"):
            try:
                return _commit(committer, part, saved, checkpoint, deadline, clock, hook)
            except (ReplaceConflict, MissingObject):
                saved, known = None, None  # the files changed (compaction won) or staging expired: plan again
                continue
        hits, stats, _ = find_again(committer, part, columns, known)
        find_stats.add(stats)
        if not hits:
            outcome = {"dataset": part.dataset, "partition": dict(part.values), "files": [], "rows_removed": 0,
                       "fingerprints": [],
                       "by_subject": {}, "lineage": {}, "generation": None, "op_id": None,
                       "find": find_stats.to_json()}
            checkpoint.save({"outcome": outcome})
            return outcome
        op_id = op_id_for(op_prefix, [h.name for h in hits])
        done = {f["name"]: f for f in (saved or {}).get("files", [])} if (saved or {}).get("op_id") == op_id else {}
        plan: dict[str, Any] = {"op_id": op_id, "files": list(done.values()), "find": find_stats.to_json()}
        held: list[tuple[dict[str, Any], FileToStage]] = []
        for i, hit in enumerate(hits):
            if hit.name in done:
                continue
            if clock() >= deadline:
                _stage_held(committer, held)
                checkpoint.save(plan)
                raise OutOfTime(f"{part.dataset} {dict(part.values)}: {len(plan['files'])}/{len(hits)} files done")
            record, to_stage = _rewrite_hit(committer, ref, op_id, hit, i, columns, personal, salt)
            plan["files"].append(record)
            if to_stage is not None:
                held.append((record, to_stage))
            if hit.probe.data is None or sum(len(f.data) for _, f in held) > HELD_BYTES:
                _stage_held(committer, held)  # a streamed file is worth resuming from; held output stays bounded
                checkpoint.save(plan)
            hook("file-rewritten")
        _stage_held(committer, held)
        plan["staged_all"] = True
        checkpoint.save(plan)
        hook("staged")
        saved = plan
    raise ReplaceConflict(f"{part.dataset} {dict(part.values)}: still conflicting after {MAX_REPLANS} plans")


def _commit(
    committer: PartitionCommitter, part: Partition, plan: dict[str, Any], checkpoint: Checkpoint, deadline: float,
    clock: Callable[[], float], hook: Callable[[str], None],
) -> dict[str, Any]:
    files = plan["files"]
    kept = [f for f in files if f["staged_key"]]
    add = [NewFile(f"erased-{i:04d}.parquet", f["staged_key"], f["rows_out"]) for i, f in enumerate(kept)]
    result = committer.replace(part.ref, remove=[f["name"] for f in files], add=add, op_id=plan["op_id"],
                               deadline=deadline)
    hook("committed")
    prefix = result.location.removeprefix(f"s3://{committer.bucket}/")
    for f, name in zip(kept, result.added, strict=True):
        f["new_name"] = name
        f["new_key"] = prefix + name
    by_subject: dict[str, int] = {}
    lineage: dict[str, list[int]] = {}
    for f in files:
        for k, v in f["by_subject"].items():
            by_subject[k] = by_subject.get(k, 0) + v
        for oid, lines in f["lineage"].items():
            lineage.setdefault(oid, []).extend(lines)
    outcome = {
        "dataset": part.dataset, "partition": dict(part.values), "op_id": plan["op_id"],
        "generation": result.generation, "committed_at": clock(), "replayed": result.replayed,
        "files": [{k: v for k, v in f.items() if k not in ("lineage", "staged_key", "by_subject", "fingerprints")}
                  for f in files],
        "fingerprints": sorted({x for f in files for x in f.get("fingerprints", [])}),
        "rows_removed": sum(f["rows_removed"] for f in files), "by_subject": by_subject,
        "lineage": {oid: sorted(set(lines)) for oid, lines in lineage.items()}, "find": plan.get("find", {}),
    }
    checkpoint.save({"outcome": outcome})
    return outcome


def old_generation_versions(
    bucket: str, dataset: Dataset, values: Mapping[str, str], below: int
) -> list[tuple[str, str]]:
    """Every version of every object in generations older than `below` of one partition."""
    path = layout.partition_path(dataset.partition_names, values)
    prefix = layout.partition_prefix(dataset.name, path)
    out = []
    for key, version in versions(bucket, prefix):
        gen = key[len(prefix):].split("/", 1)[0]
        if gen.startswith("gen=") and gen[4:].isdigit() and int(gen[4:]) < below:
            out.append((key, version))
    return out
