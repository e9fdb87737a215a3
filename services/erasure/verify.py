"""VERIFY: after a run, prove that no row of its subjects is left anywhere the platform keeps data.

- lake: every file under each Glue partition's *current* location (what Athena reads), probed with
  statistics and bloom filters (no false negatives) and then exactly;
- old generations: no version of any object of a generation older than the one the run committed;
- quarantine: every quarantine file of the dataset, matched as at erasure;
- raw: each raw copy found through lineage is gone, or has a single version whose erased lines are
  empty, and its landing original is gone;
- hidden lake copies (sweep.py): every version under `_staging/`, in old generations, and every
  superseded version, probed like the lake;
- rewritten files, structurally (structure.py): dictionary pages, statistics, page index, bloom
  filters and footer hold only values of the surviving rows;
- fingerprints (fingerprints.py): no row of the lake copies scanned carries the whole combination of
  an erased row's other personal values.
Anything left is reported by location (counts, keys), never by value.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from contracts import aws, records
from contracts.datasets import Dataset
from services.erasure.blobs import S3Blob
from services.erasure.copies import raw_object_clean, scan_quarantine
from services.erasure.find import FindStats
from services.erasure.fingerprints import other_personal_columns
from services.erasure.lake import old_generation_versions, probe_files
from services.erasure.runstate import Committed
from services.erasure.structure import StructureReport, check_file
from services.erasure.subjects import Subjects
from services.erasure.sweep import Copy, probe_copies, scan_dataset, summary
from services.erasure.versions import versions


def _files_at(location: str) -> list[tuple[str, str, int]]:
    """Objects directly under a Glue location (a reader's view: no recursion into other generations)."""
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    out = []
    for page in aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix,
                                                                          Delimiter="/"):
        out += [(o["Key"].rsplit("/", 1)[-1], o["Key"], o["Size"]) for o in page.get("Contents", [])]
    return out


def verify_partition(lake_bucket: str, location: str, subjects: Subjects, dataset: Dataset, *,
                     wanted: Collection[str] = (), salt: bytes = b"") -> dict[str, Any]:
    """Rows of each subject left in the files a reader of this partition sees, and what the check read;
    with `wanted` fingerprints, also the rows carrying an erased row's other personal values."""
    columns = subjects.columns(dataset)
    if not location.startswith(f"s3://{lake_bucket}/"):
        return {**empty_lake(), "files_with_subjects": [f"a partition points outside the lake: {location}"]}
    files = _files_at(location)
    hits, stats = probe_files(lake_bucket, files, columns)
    remaining: dict[str, int] = {}
    for h in hits:
        for i, n in h.probe.by_subject.items():
            remaining[subjects.hashes[i]] = remaining.get(subjects.hashes[i], 0) + n
    out = {**empty_lake(), "rows_remaining": remaining, "files_with_subjects": [h.key for h in hits if not h.error],
           "unreadable": [f"{h.key}: {h.error}" for h in hits if h.error], "scan": stats.to_json()}
    personal = other_personal_columns(dataset)
    if wanted and personal:
        found = probe_copies(lake_bucket, [Copy(k, "", size, "current", 0.0) for _, k, size in files], [],
                             personal=personal, wanted=set(wanted), salt=salt)[0]
        out["fingerprint_files_checked"] = len(files)
        out["fingerprint_rows"] = sum(h.fingerprint_rows for h in found)
        out["files_with_subjects"] += [h.copy.key for h in found if h.fingerprint_rows]
        out["unreadable"] += [f"{h.copy.key}: {h.error}" for h in found if h.error]
    return out


def merge_lake(into: dict[str, Any], part: dict[str, Any]) -> None:
    """Add one partition's verification to a dataset's."""
    for h, n in part["rows_remaining"].items():
        into["rows_remaining"][h] = into["rows_remaining"].get(h, 0) + n
    into["files_with_subjects"] += part["files_with_subjects"]
    into["unreadable"] = into.get("unreadable", []) + part.get("unreadable", [])
    for k in ("fingerprint_rows", "fingerprint_files_checked"):
        into[k] = into.get(k, 0) + part.get(k, 0)
    scan = FindStats.from_json(into["scan"])
    scan.add(FindStats.from_json(part["scan"]))
    into["scan"] = scan.to_json()


def empty_lake() -> dict[str, Any]:
    return {"rows_remaining": {}, "files_with_subjects": [], "unreadable": [], "scan": FindStats().to_json(),
            "fingerprint_rows": 0, "fingerprint_files_checked": 0}


def verify_old_generations(lake_bucket: str, dataset: Dataset, committed: Sequence[Committed]) -> list[str]:
    """Keys of old-generation versions still present in partitions the run committed to."""
    left = []
    for c in committed:
        found = old_generation_versions(lake_bucket, dataset, c.partition, c.generation)
        left += sorted({k for k, _ in found})
    return left


def verify_quarantine(bucket: str, dataset: Dataset, subjects: Subjects, rewritten: Sequence[str]) -> dict[str, Any]:
    found = scan_quarantine(bucket, dataset, subjects)
    stale = [k for k in rewritten if len(list(versions(bucket, k, exact=True))) > 1]
    return {**found, "rows_remaining": sum(found["by_subject"].values()), "keys_with_old_versions": stale}


def verify_raw(bucket: str, copies: Mapping[str, Sequence[int]], landing_left: Sequence[str],
               dialect: records.Dialect = records.LINES) -> list[str]:
    """Problems left in raw copies: `copies` maps each key to every line its erasure blanked."""
    problems = []
    for key, lines in sorted(copies.items()):
        try:
            why = raw_object_clean(bucket, key, lines, dialect)
        except Exception as exc:  # a copy that cannot be read is not clean: the request fails, naming it
            why = f"unreadable ({type(exc).__name__})"
        if why:
            problems.append(f"{key}: {why}")
    return problems + [f"landing original still present: {k}" for k in landing_left]


def verify_hidden(lake_bucket: str, database: str, dataset: Dataset, subjects: Subjects,
                  wanted: Collection[str], salt: bytes) -> dict[str, Any]:
    """Every hidden copy of the dataset (staging, old generations, superseded versions) probed."""
    hits, checked = scan_dataset(lake_bucket, database, dataset, subjects.columns(dataset), wanted=set(wanted),
                                 salt=salt)
    out = summary(hits, checked)
    by_subject: dict[str, int] = {}
    for h in hits:
        for i, n in h.by_subject.items():
            by_subject[subjects.hashes[i]] = by_subject.get(subjects.hashes[i], 0) + n
    out["by_subject"] = by_subject
    return out


def verify_rewritten(lake_bucket: str, keys: Sequence[str], subject_ids: Collection[str]) -> dict[str, Any]:
    """The structural check of every file the run wrote that is still in the lake."""
    s3 = aws.client("s3")
    report = StructureReport()
    gone = 0
    for key in keys:
        try:
            size = s3.head_object(Bucket=lake_bucket, Key=key)["ContentLength"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                gone += 1  # replaced since (a later attempt or compaction): its successor is probed as lake
                continue
            raise
        try:
            report.add(check_file(S3Blob(lake_bucket, key, size), subject_ids=subject_ids, label=key))
        except Exception as exc:  # not checkable is not clean
            report.add(StructureReport(files=1, problems=[f"{key}: not checkable ({type(exc).__name__})"]))
    return {**report.to_json(), "replaced_since": gone}


def verify_landing(bucket: str, originals: Sequence[tuple[str, str]]) -> list[str]:
    """Landing originals (key, ETag) of erased raw copies that are still there."""
    s3 = aws.client("s3")
    left = []
    for key, etag in originals:
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                continue
            raise
        if head.get("ETag", "").strip('"') == etag.strip('"'):
            left.append(f"landing original still present: {key}")
    return left


def unattributed(d: Mapping[str, Any]) -> bool:
    """Findings of a dataset's verification that no single subject owns, so they fail every request
    of the run on that dataset: unreadable copies, fingerprint matches, structural problems."""
    lake, hidden = d["lake"], d["hidden"]
    return bool(lake.get("unreadable") or lake.get("fingerprint_rows") or hidden["fingerprint_rows"]
                or hidden["unreadable"] or d["structure"]["problems"] or d["quarantine"].get("unreadable"))


def dataset_problems(name: str, hidden: Mapping[str, Any], d: Mapping[str, Any]) -> list[str]:
    """Value-free lines for the request and certificate (hidden copies already cut to the request's subjects)."""
    out = []
    rows = sum(hidden["by_subject"].values())
    if rows:
        out.append(f"{name}: {rows} row(s) left in lake copies readers do not see (staging, old generations, "
                   "old versions)")
    fpr = int(d["lake"].get("fingerprint_rows", 0)) + int(hidden["fingerprint_rows"])
    if fpr:
        out.append(f"{name}: {fpr} row(s) carry an erased row's other personal values")
    unreadable = [*d["lake"].get("unreadable", []), *hidden["unreadable"], *d["quarantine"].get("unreadable", [])]
    out += [f"{name}: {p}" for p in unreadable[:20]]
    out += [f"{name}: {p}" for p in d["structure"]["problems"][:20]]
    return out
