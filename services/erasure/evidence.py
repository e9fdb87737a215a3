"""From a run's task results and checks to its verdict and each request's evidence.

`verification_report` joins what verify.py checked into one report per run (per dataset, and which
request passed); `request_evidence` cuts the run's results and that report to one request — its
subjects, its datasets — for certificate.py. Keys of partitions drawn from a subject column (a
tenant id) are hashed here, and every text that may quote such a path is redacted, so nothing a
certificate publishes names a subject.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts import records
from contracts.datasets import Dataset
from services.erasure import certificate, verify
from services.erasure.config import Config
from services.erasure.find import FindStats
from services.erasure.hashing import redact, subject_hash
from services.erasure.members import VAULT_MISSING, RunSubjects
from services.erasure.model import ErasureRequest
from services.erasure.runstate import RunState, TaskResult
from services.erasure.workspace import RunWorkspace


@dataclass
class RunResults:
    """Every task result of a run over all its attempts, and what each attempt's FIND read."""

    lake: list[TaskResult]  # the lake stage: partition ("lake") and quarantine tasks
    raw: list[TaskResult]
    find: list[dict[str, Any]]  # FIND plans of the attempts (stats per dataset)

    @classmethod
    def load(cls, rws: RunWorkspace, run: RunState) -> RunResults:
        finds = [rws.get(rws.find_key(a)) for a in range(1, run.attempt + 1)]
        return cls(rws.all_results(run, "lake"), rws.all_results(run, "raw"), [f for f in finds if f])


def fingerprints(lake_results: Sequence[TaskResult]) -> dict[str, set[str]]:
    """Per dataset, the fingerprints of every row the run's partition tasks removed (fingerprints.py)."""
    out: dict[str, set[str]] = {}
    for r in lake_results:
        if r.kind == "lake" and r.fingerprints:
            out.setdefault(r.dataset, set()).update(r.fingerprints)
    return out


def verification_report(
    cfg: Config, datasets: Mapping[str, Dataset], run: RunState, results: RunResults, subjects: RunSubjects,
    lake: Mapping[str, Any], requests: Sequence[ErasureRequest], *, salt: bytes, clock: Callable[[], float],
) -> dict[str, Any]:
    """Check every other copy (verify.py) and join it with the lake scan `lake`: per dataset what is left,
    per request whether it passed."""
    by_dataset: dict[str, Any] = {}
    raw_ok = [r for r in results.raw if r.ok]
    failed_tasks = [r for r in [*results.lake, *results.raw] if not r.ok]
    wanted = fingerprints(results.lake)
    for ds_name, subs in sorted(subjects.by_dataset.items()):
        ds = datasets[ds_name]
        committed = [c for c in run.committed if c.dataset == ds_name]
        copies: dict[str, list[int]] = {}
        landing_left: list[str] = []
        for r in raw_ok:
            if r.dataset != ds_name:
                continue
            for c in r.copies:  # lineage lines and every line of their records the erasure blanked
                copies[c["key"]] = sorted(set(r.lines) | set(c.get("lines_erased") or []))
        for oid in run.lineage.get(ds_name, {}):
            if not any(r.object_id == oid for r in raw_ok):
                landing_left.append(f"raw object {oid} was not processed")
        rewritten_q = [f["key"] for r in results.lake if r.kind == "quarantine" and r.dataset == ds_name
                       for f in r.files if f["action"] == "rewritten"]
        originals = sorted({(c["landing_key"], c.get("landing_etag", "")) for r in raw_ok if r.dataset == ds_name
                            for c in r.copies if c.get("landing_key")})
        written = [f["new_key"] for r in results.lake if r.kind == "lake" and r.dataset == ds_name and r.ok
                   for f in r.files if f.get("new_key")]
        by_dataset[ds_name] = {
            "lake": lake.get(ds_name, verify.empty_lake()),
            "old_generations": verify.verify_old_generations(cfg.lake_bucket, ds, committed),
            "hidden": verify.verify_hidden(cfg.lake_bucket, cfg.database, ds, subs, wanted.get(ds_name, set()), salt),
            "structure": verify.verify_rewritten(cfg.lake_bucket, written, subs.ids),
            "quarantine": verify.verify_quarantine(cfg.quarantine_bucket, ds, subs, rewritten_q),
            "landing_checked": len(originals), "raw_checked": len(copies),
            "raw": verify.verify_raw(cfg.raw_bucket, copies, [], records.Dialect.of(ds.format))
            + verify.verify_landing(cfg.landing_bucket, originals) + landing_left,
            "failed_tasks": [f"{r.kind} task {r.task_id}: {r.failed}" for r in failed_tasks if r.dataset == ds_name],
        }
    passed = {}
    for req in requests:
        ok = True
        for ds_name in req.datasets:
            d = by_dataset.get(ds_name)
            if d is None:
                continue
            rows = sum(n for h, n in d["lake"]["rows_remaining"].items() if h in req.subject_hashes)
            rows += sum(n for h, n in d["quarantine"]["by_subject"].items() if h in req.subject_hashes)
            rows += sum(n for h, n in d["hidden"]["by_subject"].items() if h in req.subject_hashes)
            if rows or d["old_generations"] or d["raw"] or d["failed_tasks"] \
                    or d["quarantine"]["keys_with_old_versions"] or verify.unattributed(d):
                ok = False
        passed[req.id] = ok and req.id not in subjects.missing
    return {"at": clock(), "datasets": by_dataset, "passed": passed, "vault_missing": sorted(subjects.missing)}


def public_partition(ds: Dataset, r: TaskResult, rows: int, salt: bytes) -> dict[str, Any]:
    """A partition's outcome for the certificate; a partition key drawn from a subject column (a
    tenant id) would name the subject, so its value, in the values and in every key, is hashed."""
    values = {k: r.partition[k] for k in ds.partition_names}
    secret = [p.name for p in ds.partitioning if p.source in ds.subject_columns and p.transform == "identity"]
    files = [dict(f) for f in r.files]
    for name in secret:
        hidden = subject_hash(values[name], salt)
        values[name] = hidden
        segment = re.compile(rf"(^|/){re.escape(name)}=[^/]+")

        def hashed(m: re.Match[str], name: str = name, hidden: str = hidden) -> str:
            return f"{m.group(1)}{name}={hidden}"

        for f in files:
            for k in ("key", "new_key"):
                if f.get(k):
                    f[k] = segment.sub(hashed, f[k])
    return {"partition": values, "generation": r.generation, "files": files, "rows_removed_for_request": rows}


def request_evidence(
    req: ErasureRequest, run: RunState, results: RunResults, report: Mapping[str, Any],
    datasets: Mapping[str, Dataset], subject_ids: Collection[str], *, salt: bytes,
) -> dict[str, Any]:
    """What the run did and verified for one request: the `evidence` certificate.build publishes."""
    mine = set(req.subject_hashes)
    lake_out: dict[str, Any] = {}
    for ds_name in req.datasets:
        find = FindStats()
        for doc in results.find:
            find.add(FindStats.from_json(doc["stats"].get(ds_name, {})))
        parts = []
        rows = 0
        for r in results.lake:
            if r.kind != "lake" or r.dataset != ds_name or not r.ok:
                continue
            n = sum(v for h, v in r.by_subject.items() if h in mine)
            if not n:
                continue
            rows += n
            parts.append(public_partition(datasets[ds_name], r, n, salt))
        lake_out[ds_name] = {
            "rows_removed": rows, "partitions": parts,
            "files_rewritten": sum(1 for p in parts for f in p["files"] if f.get("new_key")),
            "files_removed": sum(1 for p in parts for f in p["files"] if not f.get("new_key")),
            "find": find.to_json(),
        }
    q_files = [f for r in results.lake if r.kind == "quarantine" and r.dataset in req.datasets
               for f in r.files if any(h in mine for h in f.get("by_subject", {}))]
    raw = [c for r in results.raw if r.dataset in req.datasets and r.ok for c in r.copies]
    copies = {
        "quarantine_files": [{k: f[k] for k in ("key", "action", "rows_removed", "versions_deleted")}
                             for f in q_files],
        "quarantine_rows_removed": sum(v for f in q_files for h, v in f["by_subject"].items() if h in mine),
        "raw_objects": [{k: c.get(k) for k in ("key", "action", "lines_blanked", "versions_deleted", "why")}
                        for c in raw],
        "raw_lines_blanked": sum(int(c.get("lines_blanked") or 0) for c in raw),
        "landing_deleted": sum(1 for c in raw if c.get("landing_deleted")),
        "old_generation_versions_deleted": run.old_generation_versions_deleted,
        "hidden_lake_copies_deleted": dict(run.hidden_deleted),
        "versions_deleted": sum(int(f["versions_deleted"]) for f in q_files)
        + sum(int(c.get("versions_deleted") or 0) for c in raw),
    }
    return {"attempts": run.attempt, "datasets": lake_out, "copies": copies,
            "verification": _verification(req, report, subject_ids, salt)}


def _verification(req: ErasureRequest, report: Mapping[str, Any], subject_ids: Collection[str],
                  salt: bytes) -> dict[str, Any]:
    """The run's verification cut to the request's subjects and datasets, with value-free problems."""
    mine = set(req.subject_hashes)
    problems = [VAULT_MISSING] if req.id in report.get("vault_missing", []) else []
    vds = {}
    for ds_name in req.datasets:
        d = report["datasets"].get(ds_name)
        if d is None:
            continue
        lake = {**d["lake"], "rows_remaining": {h: n for h, n in d["lake"]["rows_remaining"].items() if h in mine}}
        quarantine = {**d["quarantine"],
                      "by_subject": {h: n for h, n in d["quarantine"]["by_subject"].items() if h in mine}}
        quarantine["rows_remaining"] = sum(quarantine["by_subject"].values())
        hidden = {**d["hidden"], "by_subject": {h: n for h, n in d["hidden"]["by_subject"].items() if h in mine}}
        vds[ds_name] = {"lake": lake, "quarantine": quarantine, "old_generations": d["old_generations"],
                        "raw": d["raw"], "failed_tasks": d["failed_tasks"], "hidden": hidden,
                        "structure": d["structure"], "landing_checked": d["landing_checked"],
                        "raw_checked": d["raw_checked"]}
        problems += verify.dataset_problems(ds_name, hidden, d)
        problems += [f"{ds_name}: {sum(lake['rows_remaining'].values())} lake row(s) left in "
                     f"{len(lake['files_with_subjects'])} file(s)"] if sum(lake["rows_remaining"].values()) else []
        problems += [f"{ds_name}: {quarantine['rows_remaining']} quarantine row(s) left"] \
            if quarantine["rows_remaining"] else []
        problems += [f"{ds_name}: old generation object {k}" for k in d["old_generations"][:20]]
        problems += [f"{ds_name}: raw {p}" for p in d["raw"][:20]]
        problems += [f"{ds_name}: {p}" for p in d["failed_tasks"][:20]]
        problems += [f"{ds_name}: quarantine key with old versions {k}"
                     for k in d["quarantine"]["keys_with_old_versions"][:20]]
    ids = list(subject_ids)

    def clean(texts: list[str]) -> list[str]:  # keys of subject-keyed partitions would name subjects
        return [redact(t, ids, salt) for t in texts]

    for d in vds.values():
        d["lake"]["files_with_subjects"] = clean(d["lake"]["files_with_subjects"])
        d["lake"]["unreadable"] = clean(d["lake"].get("unreadable", []))
        d["quarantine"]["files_with_subjects"] = clean(d["quarantine"]["files_with_subjects"])
        d["quarantine"]["unreadable"] = clean(d["quarantine"].get("unreadable", []))
        d["hidden"]["copies_with_subjects"] = clean(d["hidden"]["copies_with_subjects"])
        d["structure"]["problems"] = clean(d["structure"]["problems"])
        for k in ("old_generations", "raw", "failed_tasks"):
            d[k] = clean(d[k])
    passed = report["passed"].get(req.id, False) and req.id not in report.get("vault_missing", [])
    return {"passed": passed, "at": certificate._iso(report["at"]), "datasets": vds,
            "problems": clean(problems), "checks": certificate.checks(vds, passed)}
