"""Lake copies no reader sees: staged files, old generations, superseded versions — found and purged.

Readers see the objects of each partition's current generation; the lake bucket holds more:
* `_staging/<dataset>/<partition>/<op digest>/…`: every file a writer staged. After the commit the
  staged file is a second copy of the committed rows, kept by the committer until its grace ends
  (hours). Transform stages every file it appends, so a subject's rows are there after every load.
* `<dataset>/<partition>/gen=<n>/…` with n below the current generation: replaced by compaction or
  erasure, deleted by the committer after its grace (or by the run's purge, for its own commits).
* older versions of any key (the bucket is versioned).
`hidden_copies` lists them all (every version) and `probe_copies` tests each with the same FIND
probe as the lake (statistics, bloom filter, exact) plus, when the dataset has other personal
columns, the erased rows' fingerprints. `purge` deletes what holds a subject's row:
* staged copies whose op is committed (`PartitionCommitter.staged_op_state`). A staged copy of an
  op not committed is left: deleting it could strand a commit being rolled forward (its intent
  would name a file that is gone). The run waits for it instead (engine: the purge looks again
  every 30 s): the writer commits it, and it is deleted here, or the writer gave up and the
  committer's cleanup, which every run tick calls, deletes it after the writer's grace;
* old generations and superseded versions — after the purge grace, like the run's own commits;
* a generation above the current one (a commit being built) is left and reported.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pyarrow.parquet as pq

from contracts import aws
from contracts import lake as layout
from contracts.commits import PartitionCommitter, PartitionRef
from contracts.datasets import Dataset
from services.erasure import fingerprints as fp
from services.erasure.blobs import BlobFile, CachedBlob, S3Blob
from services.erasure.find import probe
from services.erasure.lake import Partition, glue_partitions, probe_pool
from services.erasure.subjects import ColumnValues
from services.erasure.versions import delete_versions

STAGING, OLD_GENERATION, OLD_VERSION, UNCOMMITTED = "staging", "old generation", "old version", "uncommitted"


@dataclass(frozen=True)
class Copy:
    key: str
    version_id: str
    size: int
    kind: str
    modified: float
    ref: PartitionRef | None = None
    digest: str = ""  # staged copies: the op's digest


def _split_path(ds: Dataset, parts: list[str]) -> dict[str, str] | None:
    names = ds.partition_names
    if len(parts) < len(names):
        return None
    values = {}
    for name, seg in zip(names, parts[: len(names)], strict=True):
        k, eq, v = seg.partition("=")
        if not eq or k != name:
            return None
        values[name] = unquote(v)
    return values


def hidden_copies(bucket: str, ds: Dataset, current: Sequence[Partition]) -> list[Copy]:
    """Every object version of the dataset in the lake bucket that readers of `current` do not see."""
    gen_of = {}
    for p in current:
        path = layout.partition_path(ds.partition_names, p.values)
        gen_of[path] = layout.generation_of(p.location, bucket, ds.name, path)
    out = []
    s3 = aws.client("s3")
    n = len(ds.partition_names)
    for prefix in (f"{ds.name}/", f"{layout.STAGING_ROOT}{ds.name}/"):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for v in page.get("Versions", []):
                key = v["Key"]
                parts = key[len(prefix):].split("/")
                values = _split_path(ds, parts)
                when = v["LastModified"].timestamp()
                if values is None:
                    out.append(Copy(key, v["VersionId"], v["Size"], UNCOMMITTED, when))
                    continue
                ref = PartitionRef(ds.name, values)
                path = "/".join(parts[:n])
                if prefix.startswith(layout.STAGING_ROOT):
                    digest = parts[n] if len(parts) > n else ""
                    out.append(Copy(key, v["VersionId"], v["Size"], STAGING, when, ref, digest))
                    continue
                seg = parts[n] if len(parts) > n else ""
                gen = int(seg[4:]) if seg.startswith("gen=") and seg[4:].isdigit() else None
                cur = gen_of.get(path)
                if gen is None or cur is None or gen > cur:
                    out.append(Copy(key, v["VersionId"], v["Size"], UNCOMMITTED, when, ref))
                elif gen < cur:
                    out.append(Copy(key, v["VersionId"], v["Size"], OLD_GENERATION, when, ref))
                elif not v.get("IsLatest"):
                    out.append(Copy(key, v["VersionId"], v["Size"], OLD_VERSION, when, ref))
    return out


@dataclass
class CopyHit:
    copy: Copy
    rows: int  # rows of a subject (by subject column)
    fingerprint_rows: int  # rows carrying an erased row's other personal values
    by_subject: dict[int, int]
    error: str | None = None


def _fingerprint_rows(blob: S3Blob, columns: Sequence[str], wanted: set[str], salt: bytes) -> int:
    pf = pq.ParquetFile(BlobFile(CachedBlob(blob)), pre_buffer=False)
    present = [c for c in columns if c in pf.schema_arrow.names]
    if len(present) != len(columns):
        return 0
    return sum(fp.matches(pf.read_row_group(r, columns=present), present, wanted, salt)
               for r in range(pf.metadata.num_row_groups))


def probe_copies(
    bucket: str, copies: Sequence[Copy], columns: Sequence[ColumnValues], *,
    personal: Sequence[str] = (), wanted: set[str] | None = None, salt: bytes = b"",
) -> tuple[list[CopyHit], dict[str, int]]:
    """Probe every copy (concurrently); (copies holding a subject's row or an erased row's
    fingerprint, or that could not be read; versions checked per kind)."""
    wanted = wanted or set()

    def one(c: Copy) -> CopyHit:
        blob = S3Blob(bucket, c.key, c.size, version_id=c.version_id)
        try:
            if not c.key.endswith(".parquet"):
                return CopyHit(c, 0, 0, {}, "not a Parquet file")
            found = probe(blob, columns)
            fpr = _fingerprint_rows(blob, personal, wanted, salt) if personal and wanted else 0
            return CopyHit(c, found.matched_rows, fpr, dict(found.by_subject))
        except Exception as exc:  # an unreadable copy is reported (value-free), never skipped
            return CopyHit(c, 0, 0, {}, f"unreadable ({type(exc).__name__})")

    results = list(probe_pool().map(one, copies)) if len(copies) > 1 else [one(c) for c in copies]
    checked: dict[str, int] = {}
    for c in copies:
        checked[c.kind] = checked.get(c.kind, 0) + 1
    return [h for h in results if h.rows or h.fingerprint_rows or h.error], checked


def purge(bucket: str, hits: Sequence[CopyHit], committer: PartitionCommitter) -> dict[str, Any]:
    """Delete the hit copies that are safe to delete (see the module doc); returns counts and what was left."""
    delete: list[tuple[str, str]] = []
    in_flight = 0
    left: list[str] = []
    deleted: dict[str, int] = {}
    for h in hits:
        c = h.copy
        if h.error and not (h.rows or h.fingerprint_rows):
            left.append(f"{c.kind} {c.key}: {h.error}")
            continue
        if c.kind == STAGING and c.ref is not None:
            if committer.staged_op_state(c.ref, c.digest) != "committed":
                left.append(f"staged {c.key}: its commit is not finished")
                in_flight += 1
                continue
        elif c.kind == UNCOMMITTED:
            left.append(f"{c.key}: a generation being built or not in the catalog")
            continue
        delete.append((c.key, c.version_id))
        deleted[c.kind] = deleted.get(c.kind, 0) + 1
    delete_versions(bucket, delete)
    return {"deleted": deleted, "left": left, "in_flight": in_flight}


def summary(hits: Sequence[CopyHit], checked: Mapping[str, int]) -> dict[str, Any]:
    """Verification's view: versions checked per kind and every copy still holding something."""
    return {
        "checked": dict(checked),
        "rows_remaining": sum(h.rows for h in hits),
        "fingerprint_rows": sum(h.fingerprint_rows for h in hits),
        "copies_with_subjects": [f"{h.copy.kind} {h.copy.key}" for h in hits if h.rows or h.fingerprint_rows],
        "unreadable": [f"{h.copy.kind} {h.copy.key}: {h.error}" for h in hits if h.error],
    }


def scan_dataset(
    bucket: str, database: str, ds: Dataset, columns: Sequence[ColumnValues], *,
    wanted: set[str] | None = None, salt: bytes = b"", skip_staged: Collection[str] = (),
) -> tuple[list[CopyHit], dict[str, int]]:
    """List and probe every hidden copy of one dataset (see `hidden_copies`), but the staged copies of the
    commits whose op digests are in `skip_staged` (the purge's own rewrites: verification probes them too)."""
    copies = [c for c in hidden_copies(bucket, ds, glue_partitions(database, ds))
              if not (c.kind == STAGING and c.digest in skip_staged)]
    return probe_copies(bucket, copies, columns, personal=fp.other_personal_columns(ds), wanted=wanted, salt=salt)
