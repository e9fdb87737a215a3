"""VERIFY: after a run, prove that no row of its subjects is left anywhere the platform keeps data.

- lake: every file under each Glue partition's *current* location (what Athena reads), probed with
  statistics and bloom filters (no false negatives) and then exactly;
- old generations: no version of any object of a generation older than the one the run committed;
- quarantine: every quarantine file of the dataset, matched as at erasure;
- raw: each raw copy found through lineage is gone, or has a single version whose erased lines are
  empty (and the landing original is gone).
Anything left is reported by location (counts, keys), never by value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from contracts import aws
from contracts.datasets import Dataset
from services.erasure.copies import raw_object_clean, scan_quarantine
from services.erasure.find import FindStats
from services.erasure.lake import old_generation_versions, probe_files
from services.erasure.subjects import Subjects
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


def verify_partition(lake_bucket: str, location: str, subjects: Subjects, dataset: Dataset) -> dict[str, Any]:
    """Rows of each subject left in the files a reader of this partition sees, and what the check read."""
    columns = subjects.columns(dataset)
    if not location.startswith(f"s3://{lake_bucket}/"):
        return {"rows_remaining": {}, "files_with_subjects": [f"a partition points outside the lake: {location}"],
                "scan": FindStats().to_json()}
    hits, stats = probe_files(lake_bucket, _files_at(location), columns)
    remaining: dict[str, int] = {}
    for h in hits:
        for i, n in h.probe.by_subject.items():
            remaining[subjects.hashes[i]] = remaining.get(subjects.hashes[i], 0) + n
    return {"rows_remaining": remaining, "files_with_subjects": [h.key for h in hits], "scan": stats.to_json()}


def merge_lake(into: dict[str, Any], part: dict[str, Any]) -> None:
    """Add one partition's verification to a dataset's."""
    for h, n in part["rows_remaining"].items():
        into["rows_remaining"][h] = into["rows_remaining"].get(h, 0) + n
    into["files_with_subjects"] += part["files_with_subjects"]
    scan = FindStats.from_json(into["scan"])
    scan.add(FindStats.from_json(part["scan"]))
    into["scan"] = scan.to_json()


def empty_lake() -> dict[str, Any]:
    return {"rows_remaining": {}, "files_with_subjects": [], "scan": FindStats().to_json()}


def verify_old_generations(lake_bucket: str, dataset: Dataset, committed: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys of old-generation versions still present in partitions the run committed to."""
    left = []
    for c in committed:
        found = old_generation_versions(lake_bucket, dataset, c["partition"], int(c["generation"]))
        left += sorted({k for k, _ in found})
    return left


def verify_quarantine(bucket: str, dataset: Dataset, subjects: Subjects, rewritten: Sequence[str]) -> dict[str, Any]:
    found = scan_quarantine(bucket, dataset, subjects)
    stale = [k for k in rewritten if len(list(versions(bucket, k, exact=True))) > 1]
    return {**found, "rows_remaining": sum(found["by_subject"].values()), "keys_with_old_versions": stale}


def verify_raw(bucket: str, copies: Mapping[str, Sequence[int]], landing_left: Sequence[str]) -> list[str]:
    problems = []
    for key, lines in sorted(copies.items()):
        why = raw_object_clean(bucket, key, lines)
        if why:
            problems.append(f"{key}: {why}")
    return problems + [f"landing original still present: {k}" for k in landing_left]
