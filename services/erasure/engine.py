"""The run: batches pending requests and drives them FIND → ERASE → PURGE → VERIFY → certificate.

A run is a record in the state table plus documents in the erasure bucket. Every step reads the
run, does idempotent work, and saves the next phase, so a tick that dies anywhere is finished by
the next one (the run function fires on a schedule and on demand; workers send a tick when a stage
completes). A lease on the run keeps two ticks from advancing it at once.

Phases (and the request state they show):
  find    (FINDING)  partitions → files → row groups that may hold a subject (find.py)
  lake    (ERASING)  one worker task per partition with a hit + one per dataset's quarantine
  raw     (ERASING)  one worker task per raw object reached through lineage
  purge   (ERASING)  after the grace, every version of the replaced generations is deleted
  verify  (VERIFYING) zero rows left anywhere → COMPLETED; else another attempt, finally FAILED
Requests can be cancelled until the run leaves `find`; the run drops them when it does.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts import events, records
from contracts.commits import PartitionCommitter
from contracts.datasets import Dataset, load_datasets
from services.erasure import certificate, sweep, verify
from services.erasure.config import Config
from services.erasure.find import FindStats
from services.erasure.hashing import redact, salt_id, subject_hash
from services.erasure.lake import Partition, candidate_partitions, find_in_partition, old_generation_versions
from services.erasure.model import ErasureRequest, State, new_run_id
from services.erasure.store import Conflict, NotFound, Run, Store
from services.erasure.subjects import Subjects
from services.erasure.vault import unseal
from services.erasure.versions import delete_versions
from services.erasure.workspace import Workspace, certificate_key, run_prefix

PHASES = ("find", "lake", "raw", "purge", "verify", "done")
MAX_REQUESTS_PER_RUN = 500
LEASE_MARGIN_S = 30
FIND_SAVE_EVERY = 25
#: while staged copies of unfinished commits hold a subject's row, the purge looks again this often …
IN_FLIGHT_POLL_S = 30
#: … for at most the committer's grace plus this (its cleanup deletes abandoned staging by then)
IN_FLIGHT_MARGIN_S = 900


@dataclass
class Ports:
    """Side effects other than the state table and buckets, injectable for tests."""

    send: Callable[[str, dict[str, Any]], None]
    publish: Callable[[Sequence[events.EventDetail]], None]
    notify: Callable[[str, str], None]
    metric: Callable[[str, float], None]


def subject_datasets(datasets: Mapping[str, Dataset]) -> list[str]:
    """Datasets erasure reaches: every contract that declares subject columns."""
    return sorted(n for n, d in datasets.items() if d.subject_columns)


def task_id(attempt: int, stage: str, n: int) -> str:
    return f"{attempt}.{stage}.{n:05d}"


@dataclass
class RunSubjects:
    """Per dataset, the subjects of the run's requests whose scope includes it."""

    by_dataset: dict[str, Subjects] = field(default_factory=dict)
    owners: dict[str, set[str]] = field(default_factory=dict)  # subject hash -> request ids
    #: open requests whose vault item is gone (the TTL backstop fired): nothing of theirs can be
    #: searched, so they can never be certified; they end FAILED with VAULT_MISSING
    missing: list[str] = field(default_factory=list)


#: why a request whose subject ids are gone fails (value-free: no id is known any more)
VAULT_MISSING = "subject ids no longer available: vault item missing"


class Engine:
    def __init__(
        self,
        cfg: Config,
        *,
        store: Store,
        workspace: Workspace,
        committer: PartitionCommitter,
        ports: Ports,
        salt: bytes,
        datasets: Mapping[str, Dataset] | None = None,
        clock: Callable[[], float] = time.time,
        hook: Callable[[str], None] = lambda step: None,
    ) -> None:
        self.cfg, self.store, self.ws, self.committer, self.ports = cfg, store, workspace, committer, ports
        self.salt = salt
        self.datasets = dict(datasets if datasets is not None else load_datasets())
        self.clock = clock
        self.hook = hook

    @property
    def retention_s(self) -> float:
        return self.cfg.record_retention_days * 86400

    # -- ticks ----------------------------------------------------------------------------------
    def tick(self, *, start: bool, deadline: float, run_ids: Iterable[str] = ()) -> dict[str, Any]:
        """One invocation: maybe start a run, advance active runs, report deadline risk."""
        report: dict[str, Any] = {"started": None, "advanced": {}}
        if self.clock() < deadline:
            self.committer.cleanup(deadline=deadline)  # settle crashed commits, delete due garbage
        started = self.start_run(force=start)
        report["started"] = started
        for run_id in dict.fromkeys([*run_ids, *self.store.active_runs()]):
            if self.clock() >= deadline:
                break
            report["advanced"][run_id] = self.advance(run_id, deadline)
        report["at_risk"] = self.report_risk()
        return report

    def report_risk(self) -> int:
        now = self.clock()
        risk = self.cfg.risk_days * 86400
        at_risk = sum(1 for r in self.store.open_requests() if r["deadline"] - now < risk)
        self.ports.metric("ErasureRequestsAtRisk", at_risk)
        return at_risk

    def start_run(self, *, force: bool) -> str | None:
        """Batch every pending request into a new run if forced, enough are waiting, or the oldest waited long."""
        pending = self.store.pending()
        if not pending:
            return None
        now = self.clock()
        due = len(pending) >= self.cfg.batch_size or now - pending[0]["received_at"] >= self.cfg.batch_max_wait_s
        if not (force or due):
            return None
        run = Run(new_run_id(now), {
            "created_at": now, "phase": "find", "attempt": 1, "trigger": "demand" if force else "batch",
            "requests": [p["id"] for p in pending[:MAX_REQUESTS_PER_RUN]], "stages": {}, "committed": [],
            "history": [{"at": now, "phase": "find"}],
        })
        self.store.create_run(run)
        members = []
        for rid in run.body["requests"]:
            def schedule(req: ErasureRequest, run_id: str = run.id) -> bool:
                if req.state != State.RECEIVED:
                    return False
                req.run_id = run_id
                req.move(State.SCHEDULED, self.clock(), f"run {run_id}")
                return True

            req = self.store.update(rid, schedule, retention_s=self.retention_s)
            if req.run_id == run.id:
                members.append(rid)
        run = self.store.get_run(run.id)
        run.body["requests"] = members
        self.store.save_run(run, finished=not members, retention_s=self.retention_s)
        return run.id if members else None

    def advance(self, run_id: str, deadline: float) -> str:
        owner = uuid.uuid4().hex
        if not self.store.lease(run_id, owner, deadline + LEASE_MARGIN_S, self.clock()):
            return "leased elsewhere"
        try:
            while self.clock() < deadline:
                run = self.store.get_run(run_id)
                phase = run.body["phase"]
                if phase == "done":
                    return "done"
                step = getattr(self, f"_phase_{phase}")
                if not step(run, deadline):
                    now_in = self.store.get_run(run_id).body["phase"]
                    return "done" if now_in == "done" else f"waiting in {now_in}"
            return "out of time"
        finally:
            self.store.release(run_id, owner)

    # -- helpers --------------------------------------------------------------------------------
    def _save(self, run: Run, phase: str | None = None, *, finished: bool = False) -> None:
        if phase:
            run.body["phase"] = phase
            run.body["history"].append({"at": self.clock(), "phase": phase})
        self.store.save_run(run, finished=finished, retention_s=self.retention_s)
        if phase:
            self.hook(f"phase:{phase}")

    def _move_requests(self, run: Run, frm: set[State], to: State, note: str = "") -> list[str]:
        """Move members from `frm` to `to`; members found elsewhere (cancelled) leave the run."""
        kept = []
        for rid in run.body["requests"]:
            def move(req: ErasureRequest) -> bool:
                if req.run_id != run.id or req.state == to or req.state not in frm:
                    return False
                req.move(to, self.clock(), note)
                return True

            try:
                req = self.store.update(rid, move, retention_s=self.retention_s)
            except NotFound:
                continue
            if req.run_id == run.id and req.state == to:
                kept.append(rid)
        return kept

    def subjects(self, run: Run) -> RunSubjects:
        """The run's subjects per dataset, from the vault of each member request still open."""
        out = RunSubjects()
        ids_by_dataset: dict[str, list[str]] = {}
        for rid in run.body["requests"]:
            item = self.store.vault_item(rid)
            if item is None:  # normal once terminal (deleted with that transition); else lost
                with contextlib.suppress(NotFound):
                    if not self.store.get(rid).terminal:
                        out.missing.append(rid)
                continue
            req = self.store.get(rid)
            ids = unseal(rid, item)
            for h in Subjects.of(ids, self.salt).hashes:
                out.owners.setdefault(h, set()).add(rid)
            for ds in req.datasets:
                ids_by_dataset.setdefault(ds, []).extend(ids)
        out.by_dataset = {ds: Subjects.of(ids, self.salt) for ds, ids in ids_by_dataset.items()}
        return out

    def _stage_tasks(self, run: Run, stage: str, descriptors: Sequence[dict[str, Any]]) -> None:
        attempt = run.body["attempt"]
        ids = [task_id(attempt, stage, n) for n in range(len(descriptors))]
        for tid, desc in zip(ids, descriptors, strict=True):
            self.ws.put_json(f"{run_prefix(run.id)}tasks/{tid}.json", {**desc, "stage": stage, "attempt": attempt})
        run.body["stages"][f"{attempt}.{stage}"] = {"tasks": ids, "sent": False}

    def _send_stage(self, run: Run, stage: str) -> None:
        info = run.body["stages"][f"{run.body['attempt']}.{stage}"]
        if info["sent"]:
            return
        for tid in info["tasks"]:
            if tid not in run.done:
                self.ports.send(self.cfg.work_queue_url, {"run_id": run.id, "task_id": tid})
        info["sent"] = True
        self._save(run)

    def _stage_done(self, run: Run, stage: str) -> bool:
        info = run.body["stages"][f"{run.body['attempt']}.{stage}"]
        return set(info["tasks"]) <= run.done

    def results(self, run: Run, stage: str, attempt: int | None = None) -> list[dict[str, Any]]:
        attempt = run.body["attempt"] if attempt is None else attempt
        info = run.body["stages"].get(f"{attempt}.{stage}", {"tasks": []})
        out = []
        for tid in info["tasks"]:
            doc = self.ws.get_json(f"{run_prefix(run.id)}results/{tid}.json")
            if doc is not None:
                out.append(doc)
        return out

    def fingerprints(self, run: Run) -> dict[str, set[str]]:
        """Per dataset, the fingerprints of every row the run's attempts removed (fingerprints.py)."""
        out: dict[str, set[str]] = {}
        for a in range(1, run.body["attempt"] + 1):
            for r in self.results(run, "lake", a):
                if r.get("kind") == "lake" and r.get("fingerprints"):
                    out.setdefault(r["dataset"], set()).update(r["fingerprints"])
        return out

    # -- phases ---------------------------------------------------------------------------------
    def _phase_find(self, run: Run, deadline: float) -> bool:
        attempt = run.body["attempt"]
        if attempt == 1:
            run.body["requests"] = self._move_requests(run, {State.SCHEDULED, State.FINDING}, State.FINDING,
                                                       f"run {run.id}: finding")
            if not run.body["requests"]:
                return self._finish(run)
        subjects = self.subjects(run)
        key = f"{run_prefix(run.id)}find-{attempt}.json"
        doc = self.ws.get_json(key) or self._find_plan(subjects)
        stats = {ds: FindStats.from_json(v) for ds, v in doc["stats"].items()}

        def stats_json() -> dict[str, Any]:
            return {ds: st.to_json() for ds, st in stats.items()}

        parts = doc["partitions"]
        while doc["next"] < len(parts):
            if self.clock() >= deadline:
                self.ws.put_json(key, {**doc, "stats": stats_json()})
                return False
            dataset, values, location = parts[doc["next"]]
            columns = subjects.by_dataset[dataset].columns(self.datasets[dataset])
            hits, s = find_in_partition(self.committer, Partition(dataset, values, location), columns)
            stats.setdefault(dataset, FindStats()).add(s)
            if hits:
                doc["hits"].append({"dataset": dataset, "values": values, "location": location,
                                    "files": len(hits), "rows": sum(h.probe.matched_rows for h in hits)})
            doc["next"] += 1
            if doc["next"] % FIND_SAVE_EVERY == 0:
                self.ws.put_json(key, {**doc, "stats": stats_json()})
        doc["stats"] = stats_json()
        self.ws.put_json(key, doc)
        self.hook("found")
        if attempt == 1:
            run.body["requests"] = self._move_requests(run, {State.FINDING}, State.ERASING, "rewriting starts")
            if not run.body["requests"]:
                return self._finish(run)
        run.body.setdefault("find", {})[str(attempt)] = {"stats": doc["stats"], "pruned": doc["pruned"],
                                                         "partitions_with_hits": len(doc["hits"])}
        tasks = [{"kind": "lake", "dataset": h["dataset"], "values": h["values"], "location": h["location"]}
                 for h in doc["hits"]]
        tasks += [{"kind": "quarantine", "dataset": ds} for ds in sorted(subjects.by_dataset)]
        self._stage_tasks(run, "lake", tasks)
        self._save(run, "lake")
        self._send_stage(run, "lake")
        return True

    def _find_plan(self, subjects: RunSubjects) -> dict[str, Any]:
        parts: list[list[Any]] = []
        pruned = 0
        for ds_name, subs in sorted(subjects.by_dataset.items()):
            ds = self.datasets[ds_name]
            columns = subs.columns(ds)
            if not columns:
                continue
            kept, n = candidate_partitions(self.cfg.database, ds, columns)
            pruned += n
            parts += [[ds_name, dict(p.values), p.location] for p in kept]
        return {"partitions": parts, "next": 0, "hits": [], "stats": {}, "pruned": pruned}

    def _phase_lake(self, run: Run, deadline: float) -> bool:
        self._send_stage(run, "lake")
        if not self._stage_done(run, "lake"):
            return False
        lineage: dict[str, dict[str, set[int]]] = {
            ds: {oid: set(lines) for oid, lines in objs.items()} for ds, objs in run.body.get("lineage", {}).items()
        }
        for r in self.results(run, "lake"):
            if r.get("failed"):
                continue
            if r["kind"] == "lake" and r.get("generation"):
                run.body["committed"].append({"dataset": r["dataset"], "partition": r["partition"],
                                              "generation": r["generation"], "committed_at": r["committed_at"],
                                              "attempt": run.body["attempt"]})
            for oid, lines in r.get("lineage", {}).items():
                lineage.setdefault(r["dataset"], {}).setdefault(oid, set()).update(lines)
        run.body["lineage"] = {ds: {oid: sorted(v) for oid, v in objs.items()} for ds, objs in lineage.items()}
        tasks = [{"kind": "raw", "dataset": ds, "object_id": oid}
                 for ds, objs in sorted(lineage.items()) for oid in sorted(objs)]
        self._stage_tasks(run, "raw", tasks)
        self._save(run, "raw")
        self._send_stage(run, "raw")
        return True

    def _phase_raw(self, run: Run, deadline: float) -> bool:
        self._send_stage(run, "raw")
        if not self._stage_done(run, "raw"):
            return False
        this = [c for c in run.body["committed"] if c["attempt"] == run.body["attempt"]]
        last = max((c["committed_at"] for c in this), default=self.clock())
        run.body["purge_due"] = last + self.cfg.purge_grace_s
        self._save(run, "purge")
        return True

    def _phase_purge(self, run: Run, deadline: float) -> bool:
        if self.clock() < run.body["purge_due"]:
            return False
        deleted = int(run.body.get("old_generation_versions_deleted", 0))
        for c in run.body["committed"]:
            if c.get("purged"):
                continue
            ds = self.datasets[c["dataset"]]
            deleted += delete_versions(self.cfg.lake_bucket,
                                       old_generation_versions(self.cfg.lake_bucket, ds, c["partition"],
                                                               int(c["generation"])))
            c["purged"] = True
        run.body["old_generation_versions_deleted"] = deleted
        hidden = run.body.setdefault("hidden_deleted", {})
        subjects, wanted = self.subjects(run), self.fingerprints(run)
        in_flight = 0
        for ds_name, subs in sorted(subjects.by_dataset.items()):
            ds = self.datasets[ds_name]
            hits, _ = sweep.scan_dataset(self.cfg.lake_bucket, self.cfg.database, ds, subs.columns(ds),
                                         wanted=wanted.get(ds_name), salt=self.salt)
            done = sweep.purge(self.cfg.lake_bucket, hits, self.committer)
            in_flight += done["in_flight"]
            for kind, n in done["deleted"].items():
                hidden[kind] = hidden.get(kind, 0) + n
        waited_since = run.body.setdefault("in_flight_since", self.clock())
        if in_flight and self.clock() - waited_since < self.committer.settings.grace_seconds + IN_FLIGHT_MARGIN_S:
            # staged copies of commits not finished (or abandoned): the writer commits them (then they are
            # deleted here) or the committer's cleanup, run every tick, deletes them after its grace
            run.body["purge_due"] = self.clock() + IN_FLIGHT_POLL_S
            self._save(run)
            self.ports.send(self.cfg.run_queue_url, {"action": "advance", "run_id": run.id,
                                                     "delay_s": IN_FLIGHT_POLL_S})
            return False
        run.body.pop("in_flight_since", None)
        self._save(run)
        self.hook("purged")
        self._move_requests(run, {State.ERASING}, State.VERIFYING, "verification starts")
        self._save(run, "verify")
        return True

    def _phase_verify(self, run: Run, deadline: float) -> bool:
        key = f"{run_prefix(run.id)}verify-{run.body['attempt']}.json"
        report = self.ws.get_json(key)
        if report is None:  # a tick that died while finalising reuses the verdict its requests got
            subjects = self.subjects(run)
            lake = self._verify_lake(run, subjects, deadline)
            if lake is None:
                return False  # the scan continues in the next tick from where it stopped
            report = self._verify(run, subjects, lake)
            self.ws.put_json(key, report)
            self.hook("verified")
        run.body.setdefault("verifications", []).append({"attempt": run.body["attempt"], "passed_all": all(
            report["passed"].values()), "at": report["at"]})
        # another attempt cannot help a request whose ids are gone: it fails in _finalize
        failing = [rid for rid, ok in report["passed"].items() if not ok and rid not in report.get("vault_missing", [])]
        if failing and run.body["attempt"] < self.cfg.max_attempts:
            self._move_requests(run, {State.VERIFYING}, State.ERASING,
                                f"verification found rows left; attempt {run.body['attempt'] + 1}")
            run.body["attempt"] += 1
            self._save(run, "find")
            return True
        self._finalize(run, report)
        return self._finish(run)

    def _verify_lake(self, run: Run, subjects: RunSubjects, deadline: float) -> dict[str, Any] | None:
        """Probe every file under every current Glue location, resumably (a big lake takes several ticks)."""
        key = f"{run_prefix(run.id)}verify-lake-{run.body['attempt']}.json"
        wanted = self.fingerprints(run)
        doc = self.ws.get_json(key)
        if doc is None:
            parts = []
            for ds_name, subs in sorted(subjects.by_dataset.items()):
                columns = subs.columns(self.datasets[ds_name])
                if columns:
                    kept, _ = candidate_partitions(self.cfg.database, self.datasets[ds_name], columns)
                    parts += [[ds_name, p.location] for p in kept]
            doc = {"partitions": parts, "next": 0, "datasets": {ds: verify.empty_lake() for ds in subjects.by_dataset}}
        while doc["next"] < len(doc["partitions"]):
            if self.clock() >= deadline:
                self.ws.put_json(key, doc)
                return None
            ds_name, location = doc["partitions"][doc["next"]]
            verify.merge_lake(doc["datasets"][ds_name], verify.verify_partition(
                self.cfg.lake_bucket, location, subjects.by_dataset[ds_name], self.datasets[ds_name],
                wanted=wanted.get(ds_name, ()), salt=self.salt))
            doc["next"] += 1
            if doc["next"] % FIND_SAVE_EVERY == 0:
                self.ws.put_json(key, doc)
        self.ws.put_json(key, doc)
        return doc["datasets"]

    def _verify(self, run: Run, subjects: RunSubjects, lake: dict[str, Any]) -> dict[str, Any]:
        datasets: dict[str, Any] = {}
        raw_results = [r for a in range(1, run.body["attempt"] + 1) for r in self.results(run, "raw", a)]
        q_results = [r for a in range(1, run.body["attempt"] + 1) for r in self.results(run, "lake", a)
                     if r["kind"] == "quarantine"]
        failed_tasks = [r for a in range(1, run.body["attempt"] + 1) for st in ("lake", "raw")
                        for r in self.results(run, st, a) if r.get("failed")]
        wanted = self.fingerprints(run)
        for ds_name, subs in sorted(subjects.by_dataset.items()):
            ds = self.datasets[ds_name]
            committed = [c for c in run.body["committed"] if c["dataset"] == ds_name]
            copies: dict[str, list[int]] = {}
            landing_left: list[str] = []
            for r in raw_results:
                if r["dataset"] != ds_name or r.get("failed"):
                    continue
                for c in r["copies"]:  # lineage lines and every line of their records the erasure blanked
                    copies[c["key"]] = sorted(set(r["lines"]) | set(c.get("lines_erased") or []))
            for oid in run.body.get("lineage", {}).get(ds_name, {}):
                if not any(r.get("object_id") == oid and not r.get("failed") for r in raw_results):
                    landing_left.append(f"raw object {oid} was not processed")
            rewritten_q = [f["key"] for r in q_results if r["dataset"] == ds_name for f in r.get("files", [])
                           if f["action"] == "rewritten"]
            originals = sorted({(c["landing_key"], c.get("landing_etag", "")) for r in raw_results
                                if r["dataset"] == ds_name and not r.get("failed") for c in r["copies"]
                                if c.get("landing_key")})
            written = [f["new_key"] for a in range(1, run.body["attempt"] + 1) for r in self.results(run, "lake", a)
                       if r["kind"] == "lake" and r["dataset"] == ds_name and not r.get("failed")
                       for f in r.get("files", []) if f.get("new_key")]
            datasets[ds_name] = {
                "lake": lake.get(ds_name, verify.empty_lake()),
                "old_generations": verify.verify_old_generations(self.cfg.lake_bucket, ds, committed),
                "hidden": verify.verify_hidden(self.cfg.lake_bucket, self.cfg.database, ds, subs,
                                               wanted.get(ds_name, set()), self.salt),
                "structure": verify.verify_rewritten(self.cfg.lake_bucket, written, subs.ids),
                "quarantine": verify.verify_quarantine(self.cfg.quarantine_bucket, ds, subs, rewritten_q),
                "landing_checked": len(originals), "raw_checked": len(copies),
                "raw": verify.verify_raw(self.cfg.raw_bucket, copies, [], records.Dialect.of(ds.format))
                + verify.verify_landing(self.cfg.landing_bucket, originals) + landing_left,
                "failed_tasks": [f"{r['kind']} task {r['task_id']}: {r['failed']}" for r in failed_tasks
                                 if r.get("dataset") == ds_name],
            }
        passed = {}
        for rid in run.body["requests"]:
            try:
                req = self.store.get(rid)
            except NotFound:
                continue
            ok = True
            for ds_name in req.datasets:
                d = datasets.get(ds_name)
                if d is None:
                    continue
                rows = sum(n for h, n in d["lake"]["rows_remaining"].items() if h in req.subject_hashes)
                rows += sum(n for h, n in d["quarantine"]["by_subject"].items() if h in req.subject_hashes)
                rows += sum(n for h, n in d["hidden"]["by_subject"].items() if h in req.subject_hashes)
                if rows or d["old_generations"] or d["raw"] or d["failed_tasks"] \
                        or d["quarantine"]["keys_with_old_versions"] or verify.unattributed(d):
                    ok = False
            passed[rid] = ok and rid not in subjects.missing
        return {"at": self.clock(), "datasets": datasets, "passed": passed, "vault_missing": sorted(subjects.missing)}

    # -- the end --------------------------------------------------------------------------------
    def _evidence(self, run: Run, req: ErasureRequest, report: dict[str, Any]) -> dict[str, Any]:
        mine = set(req.subject_hashes)
        attempts = range(1, run.body["attempt"] + 1)
        lake_results = [r for a in attempts for r in self.results(run, "lake", a)]
        raw_results = [r for a in attempts for r in self.results(run, "raw", a)]
        datasets: dict[str, Any] = {}
        for ds_name in req.datasets:
            find = FindStats()
            for a in attempts:
                find_doc = self.ws.get_json(f"{run_prefix(run.id)}find-{a}.json")
                if find_doc:
                    find.add(FindStats.from_json(find_doc["stats"].get(ds_name, {})))
            parts = []
            rows = 0
            for r in lake_results:
                if r["kind"] != "lake" or r["dataset"] != ds_name or r.get("failed"):
                    continue
                n = sum(v for h, v in r.get("by_subject", {}).items() if h in mine)
                if not n:
                    continue
                rows += n
                parts.append(self._public_partition(ds_name, r, n))
            datasets[ds_name] = {
                "rows_removed": rows, "partitions": parts,
                "files_rewritten": sum(1 for p in parts for f in p["files"] if f.get("new_key")),
                "files_removed": sum(1 for p in parts for f in p["files"] if not f.get("new_key")),
                "find": find.to_json(),
            }
        q_files = [f for r in lake_results if r["kind"] == "quarantine" and r["dataset"] in req.datasets
                   for f in r.get("files", []) if any(h in mine for h in f.get("by_subject", {}))]
        raw = [c for r in raw_results if r["dataset"] in req.datasets and not r.get("failed") for c in r["copies"]]
        copies = {
            "quarantine_files": [{k: f[k] for k in ("key", "action", "rows_removed", "versions_deleted")}
                                 for f in q_files],
            "quarantine_rows_removed": sum(v for f in q_files for h, v in f["by_subject"].items() if h in mine),
            "raw_objects": [{k: c.get(k) for k in ("key", "action", "lines_blanked", "versions_deleted", "why")}
                            for c in raw],
            "raw_lines_blanked": sum(int(c.get("lines_blanked") or 0) for c in raw),
            "landing_deleted": sum(1 for c in raw if c.get("landing_deleted")),
            "old_generation_versions_deleted": int(run.body.get("old_generation_versions_deleted", 0)),
            "hidden_lake_copies_deleted": dict(run.body.get("hidden_deleted", {})),
            "versions_deleted": sum(int(f["versions_deleted"]) for f in q_files)
            + sum(int(c.get("versions_deleted") or 0) for c in raw),
        }
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
        ids = [i for s in self.subjects(run).by_dataset.values() for i in s.ids]

        def clean(texts: list[str]) -> list[str]:  # keys of subject-keyed partitions would name subjects
            return [redact(t, ids, self.salt) for t in texts]

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
        verification = {"passed": passed, "at": certificate._iso(report["at"]), "datasets": vds,
                        "problems": clean(problems), "checks": certificate.checks(vds, passed)}
        return {"attempts": run.body["attempt"], "datasets": datasets, "copies": copies,
                "verification": verification}

    def _public_partition(self, ds_name: str, r: dict[str, Any], rows: int) -> dict[str, Any]:
        """A partition's outcome for the certificate; a partition key drawn from a subject column (a
        tenant id) would name the subject, so its value, in the values and in every key, is hashed."""
        ds = self.datasets[ds_name]
        values = {k: r["partition"][k] for k in ds.partition_names}
        secret = [p.name for p in ds.partitioning if p.source in ds.subject_columns and p.transform == "identity"]
        files = [dict(f) for f in r["files"]]
        for name in secret:
            hidden = subject_hash(values[name], self.salt)
            segment = re.compile(rf"(^|/){re.escape(name)}=[^/]+")
            values[name] = hidden
            for f in files:
                for k in ("key", "new_key"):
                    if f.get(k):
                        f[k] = segment.sub(lambda m, h=hidden, n=name: f"{m.group(1)}{n}={h}", f[k])
        return {"partition": values, "generation": r["generation"], "files": files, "rows_removed_for_request": rows}

    def _finalize(self, run: Run, report: dict[str, Any]) -> None:
        """Per request: terminal state, certificate, ErasureCompleted (each step repeatable after a crash)."""
        for rid in run.body["requests"]:
            req = self.store.get(rid)
            if req.terminal and req.result.get("announced"):
                continue
            evidence = self._evidence(run, req, report)
            if not req.terminal:
                ok = bool(evidence["verification"]["passed"])
                summary = {
                    "rows_removed": sum(d["rows_removed"] for d in evidence["datasets"].values()),
                    "files_rewritten": sum(d["files_rewritten"] + d["files_removed"]
                                           for d in evidence["datasets"].values()),
                    "verified": ok, "certificate": certificate_key(rid, "json"), "announced": False,
                    "problems": evidence["verification"]["problems"][:20],
                }

                def finish(r: ErasureRequest, ok: bool = ok, summary: dict[str, Any] = summary) -> bool:
                    if r.terminal:
                        return False
                    r.move(State.COMPLETED if ok else State.FAILED, self.clock(),
                           "verified: no subject row or value in the copies checked (see the certificate)"
                           if ok else "verification failed: rows, values or copies left, or not checkable")
                    r.result = summary
                    r.error = None if ok else "; ".join(summary["problems"][:5]) or "verification failed"
                    return True

                req = self.store.update(rid, finish, retention_s=self.retention_s)
                self.hook("terminal")
            if self.ws.get_bytes(certificate_key(rid, "json")) is None:
                cert = certificate.build(req, evidence, salt_id=salt_id(self.salt), issued_at=self.clock())
                self.ws.put_text(certificate_key(rid, "md"), certificate.render_markdown(cert), "text/markdown")
                self.ws.put_json(certificate_key(rid, "json"), cert)
                self.hook("certified")
            self._announce(req)

    def _announce(self, req: ErasureRequest) -> None:
        detail = events.ErasureCompleted(
            request_id=req.id, state=str(req.state), subject_hashes=req.subject_hashes, datasets=req.datasets,
            rows_removed=int(req.result.get("rows_removed", 0)),
            files_rewritten=int(req.result.get("files_rewritten", 0)), verified=bool(req.result.get("verified")))
        self.ports.publish([detail])
        if req.state == State.FAILED:
            self.ports.notify(f"Erasure request {req.id} FAILED",
                              json.dumps({"request_id": req.id, "problems": req.result.get("problems", [])}))

        def announced(r: ErasureRequest) -> bool:
            if r.result.get("announced"):
                return False
            r.result["announced"] = True
            return True

        self.store.update(req.id, announced, retention_s=self.retention_s)

    def _finish(self, run: Run) -> bool:
        self.ws.delete_prefix(run_prefix(run.id))
        with contextlib.suppress(Conflict):  # another tick finished it
            self._save(run, "done", finished=True)
        return False
