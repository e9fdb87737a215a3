"""The run: batches pending requests and drives them FIND → ERASE → PURGE → VERIFY → certificate.

A run is a record in the state table plus documents in the erasure bucket. Every step reads the
run, does idempotent work, and saves the next phase, so a tick that dies anywhere is finished by
the next one (the run function fires on a schedule and on demand; workers send a tick when a stage
completes). A lease on the run keeps two ticks from advancing it at once.

Phases (and the request state they show):
  find    (FINDING)  partitions → files → row groups that may hold a subject (find.py)
  lake    (ERASING)  one worker task per partition with a hit (a few to a message) + one per dataset's quarantine
  raw     (ERASING)  one worker task per raw object reached through lineage
  purge   (ERASING)  after the grace, every version of the replaced generations is deleted
  verify  (VERIFYING) zero rows left anywhere → COMPLETED; else another attempt, finally FAILED
Requests can be cancelled until the run leaves `find`; the run drops them when it does.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts import events
from contracts.commits import PartitionCommitter
from contracts.datasets import Dataset, load_datasets
from contracts.lake import op_digest
from services.erasure import certificate, sweep, verify
from services.erasure.config import Config
from services.erasure.evidence import RunResults, fingerprints, request_evidence, verification_report
from services.erasure.find import FindStats
from services.erasure.hashing import salt_id
from services.erasure.lake import (
    Partition,
    candidate_partitions,
    find_in_partitions,
    old_generation_versions,
    probe_pool,
)
from services.erasure.members import RunSubjects, run_subjects
from services.erasure.model import ErasureRequest, State, new_run_id
from services.erasure.runstate import (
    Committed,
    FindSummary,
    LakeTask,
    Phase,
    PhaseEntered,
    QuarantineTask,
    RawTask,
    RunState,
    Stage,
    StageTasks,
    TaskResult,
    Verdict,
)
from services.erasure.store import Conflict, NotFound, Run, Store
from services.erasure.versions import delete_versions
from services.erasure.workspace import RunWorkspace, Workspace, certificate_key, stage_key, task_id

MAX_REQUESTS_PER_RUN = 500
LEASE_MARGIN_S = 30
FIND_SAVE_EVERY = 25
#: partitions FIND probes at once (see lake.find_in_partitions): enough to keep the probe pool busy
#: when each is one small file, few enough that the deadline is checked every second or so
FIND_BATCH = 16
#: partition tasks one worker message carries at most (message_groups) …
GROUP_MAX = 16
#: … and the messages a stage's partitions of one dataset are spread over, while there are enough of them
GROUP_SPREAD = 16
#: while staged copies of unfinished commits hold a subject's row, the purge looks again this often …
IN_FLIGHT_POLL_S = 30
#: … for at most the committer's grace plus this (its cleanup deletes abandoned staging by then)
IN_FLIGHT_MARGIN_S = 900


def own_staging(lake_results: Sequence[TaskResult]) -> set[str]:
    """Op digests of the run's own partition commits (every attempt): their staged files are its rewrites."""
    ops = (getattr(r, "op_id", None) for r in lake_results if r.kind == "lake")
    return {op_digest(op) for op in ops if isinstance(op, str) and op}


def message_groups(ids: Sequence[str], tasks: Sequence[LakeTask | QuarantineTask | RawTask]) -> list[list[str]]:
    """The task ids each worker message carries: a dataset's partition tasks in groups, any other task alone.

    A partition task's own work is small next to what an invocation and a task cost around it (a message,
    the run record, the vault, a tick), and a day-partitioned lake has hundreds of partitions with a hit,
    so up to GROUP_MAX partitions share a message; at least GROUP_SPREAD messages while there are enough
    partitions, so the stage still runs as widely as the worker's concurrency allows. A message's
    partitions run one after another (memory: one partition's), each committed and checkpointed on its own;
    an invocation that runs out of time sends the message again and the finished tasks are skipped.
    """
    lake_by_ds: dict[str, list[str]] = {}
    alone: list[list[str]] = []
    for tid, task in zip(ids, tasks, strict=True):
        if isinstance(task, LakeTask):
            lake_by_ds.setdefault(task.dataset, []).append(tid)
        else:
            alone.append([tid])
    groups = []
    for part_ids in lake_by_ds.values():
        size = max(1, min(GROUP_MAX, -(-len(part_ids) // GROUP_SPREAD)))
        groups += [part_ids[i : i + size] for i in range(0, len(part_ids), size)]
    return groups + alone


def _find_batch(parts: list[list[Any]], start: int) -> list[list[Any]]:
    """Up to FIND_BATCH partitions from `start`, all of the first one's dataset (one set of subject columns)."""
    dataset = parts[start][0]
    end = start
    while end < len(parts) and end - start < FIND_BATCH and parts[end][0] == dataset:
        end += 1
    return parts[start:end]


@dataclass
class Ports:
    """Side effects other than the state table and buckets, injectable for tests."""

    send: Callable[[str, dict[str, Any]], None]
    publish: Callable[[Sequence[events.EventDetail]], object]
    notify: Callable[[str, str], None]
    metric: Callable[[str, float], None]


def subject_datasets(datasets: Mapping[str, Dataset]) -> list[str]:
    """Datasets erasure reaches: every contract that declares subject columns."""
    return sorted(n for n, d in datasets.items() if d.subject_columns)


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
        if self.clock() < deadline:
            self.committer.cleanup(deadline=deadline)  # settle crashed commits, delete due garbage
        report: dict[str, Any] = {"started": self.start_run(force=start), "advanced": {}}
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
        run = Run(new_run_id(now), RunState(
            created_at=now, phase="find", attempt=1, trigger="demand" if force else "batch",
            requests=[p["id"] for p in pending[:MAX_REQUESTS_PER_RUN]], history=[PhaseEntered(at=now, phase="find")],
        ))
        self.store.create_run(run)
        members = []
        for rid in run.state.requests:
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
        run.state.requests = members
        self.store.save_run(run, finished=not members, retention_s=self.retention_s)
        return run.id if members else None

    def advance(self, run_id: str, deadline: float) -> str:
        owner = uuid.uuid4().hex
        if not self.store.lease(run_id, owner, deadline + LEASE_MARGIN_S, self.clock()):
            return "leased elsewhere"
        steps: dict[Phase, Callable[[Run, float], bool]] = {
            "find": self._phase_find, "lake": self._phase_lake, "raw": self._phase_raw,
            "purge": self._phase_purge, "verify": self._phase_verify,
        }
        try:
            while self.clock() < deadline:
                run = self.store.get_run(run_id)
                if run.state.phase == "done":
                    return "done"
                if not steps[run.state.phase](run, deadline):
                    now_in = self.store.get_run(run_id).state.phase
                    return "done" if now_in == "done" else f"waiting in {now_in}"
            return "out of time"
        finally:
            self.store.release(run_id, owner)

    # -- helpers --------------------------------------------------------------------------------
    def _save(self, run: Run, phase: Phase | None = None, *, finished: bool = False) -> None:
        if phase:
            run.state.phase = phase
            run.state.history.append(PhaseEntered(at=self.clock(), phase=phase))
        self.store.save_run(run, finished=finished, retention_s=self.retention_s)
        if phase:
            self.hook(f"phase:{phase}")

    def _move_requests(self, run: Run, frm: set[State], to: State, note: str = "") -> list[str]:
        """Move members from `frm` to `to`; members found elsewhere (cancelled) leave the run."""
        kept = []
        for rid in run.state.requests:
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
        return run_subjects(self.store, run.state.requests, self.salt)

    def _stage_tasks(self, run: Run, stage: Stage, tasks: Sequence[LakeTask | QuarantineTask | RawTask]) -> None:
        attempt, rws = run.state.attempt, RunWorkspace(self.ws, run.id)
        ids = [task_id(attempt, stage, n) for n in range(len(tasks))]
        list(probe_pool().map(lambda pair: rws.put_task(*pair), zip(ids, tasks, strict=True)))
        run.state.stages[stage_key(attempt, stage)] = StageTasks(tasks=ids, sent=False,
                                                                 groups=message_groups(ids, tasks))

    def _send_stage(self, run: Run, stage: Stage) -> None:
        info = run.state.stages[stage_key(run.state.attempt, stage)]
        if info.sent:
            return
        for group in info.groups if info.groups is not None else [[t] for t in info.tasks]:
            todo = [t for t in group if t not in run.done]
            if todo:
                self.ports.send(self.cfg.work_queue_url, {"run_id": run.id, "task_ids": todo})
        info.sent = True
        self._save(run)

    def _stage_done(self, run: Run, stage: Stage) -> bool:
        return set(run.state.stages[stage_key(run.state.attempt, stage)].tasks) <= run.done

    def results(self, run: Run, stage: Stage, attempt: int | None = None) -> list[TaskResult]:
        return RunWorkspace(self.ws, run.id).results(run.state, stage, attempt)

    def fingerprints(self, run: Run) -> dict[str, set[str]]:
        """Per dataset, the fingerprints of every row the run's attempts removed (fingerprints.py)."""
        return fingerprints(RunWorkspace(self.ws, run.id).all_results(run.state, "lake"))

    # -- phases ---------------------------------------------------------------------------------
    def _phase_find(self, run: Run, deadline: float) -> bool:
        st, rws = run.state, RunWorkspace(self.ws, run.id)
        attempt = st.attempt
        if attempt == 1:
            st.requests = self._move_requests(run, {State.SCHEDULED, State.FINDING}, State.FINDING,
                                              f"run {run.id}: finding")
            if not st.requests:
                return self._finish(run)
        subjects = self.subjects(run)
        key = rws.find_key(attempt)
        doc = rws.get(key) or self._find_plan(subjects)
        stats = {ds: FindStats.from_json(v) for ds, v in doc["stats"].items()}

        def stats_json() -> dict[str, Any]:
            return {ds: s.to_json() for ds, s in stats.items()}

        parts = doc["partitions"]
        while doc["next"] < len(parts):
            if self.clock() >= deadline:
                rws.put(key, {**doc, "stats": stats_json()})
                return False
            batch = _find_batch(parts, doc["next"])  # a few partitions of one dataset, probed together
            dataset = batch[0][0]
            columns = subjects.by_dataset[dataset].columns(self.datasets[dataset])
            found_all = find_in_partitions(self.committer, [Partition(*p) for p in batch], columns)
            for (_, values, location), (hits, found, version) in zip(batch, found_all, strict=True):
                stats.setdefault(dataset, FindStats()).add(found)
                if hits:  # what the partition's task needs to skip probing it again (lake.find_again)
                    doc["hits"].append({"dataset": dataset, "values": values, "location": location,
                                        "files": len(hits), "rows": sum(h.probe.matched_rows for h in hits),
                                        "version": version, "names": [h.name for h in hits]})
            before = doc["next"]
            doc["next"] += len(batch)
            if doc["next"] // FIND_SAVE_EVERY != before // FIND_SAVE_EVERY:
                rws.put(key, {**doc, "stats": stats_json()})
        doc["stats"] = stats_json()
        rws.put(key, doc)
        self.hook("found")
        if attempt == 1:
            st.requests = self._move_requests(run, {State.FINDING}, State.ERASING, "rewriting starts")
            if not st.requests:
                return self._finish(run)
        st.find[str(attempt)] = FindSummary(stats=doc["stats"], pruned=doc["pruned"],
                                            partitions_with_hits=len(doc["hits"]))
        tasks: list[LakeTask | QuarantineTask | RawTask] = [
            LakeTask(dataset=h["dataset"], values=h["values"], location=h["location"], stage="lake", attempt=attempt,
                     version=h.get("version"), hits=h.get("names"))
            for h in doc["hits"]]
        tasks += [QuarantineTask(dataset=ds, stage="lake", attempt=attempt) for ds in sorted(subjects.by_dataset)]
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
        st = run.state
        self._send_stage(run, "lake")
        if not self._stage_done(run, "lake"):
            return False
        lineage: dict[str, dict[str, set[int]]] = {
            ds: {oid: set(lines) for oid, lines in objs.items()} for ds, objs in st.lineage.items()
        }
        for r in self.results(run, "lake"):
            if not r.ok:
                continue
            if r.kind == "lake" and r.generation and r.committed_at is not None:
                st.committed.append(Committed(dataset=r.dataset, partition=r.partition, generation=r.generation,
                                              committed_at=r.committed_at, attempt=st.attempt))
            for oid, lines in r.lineage.items():
                lineage.setdefault(r.dataset, {}).setdefault(oid, set()).update(lines)
        st.lineage = {ds: {oid: sorted(v) for oid, v in objs.items()} for ds, objs in lineage.items()}
        tasks: list[LakeTask | QuarantineTask | RawTask] = [
            RawTask(dataset=ds, object_id=oid, stage="raw", attempt=st.attempt)
            for ds, objs in sorted(lineage.items()) for oid in sorted(objs)]
        self._stage_tasks(run, "raw", tasks)
        self._save(run, "raw")
        self._send_stage(run, "raw")
        return True

    def _phase_raw(self, run: Run, deadline: float) -> bool:
        self._send_stage(run, "raw")
        if not self._stage_done(run, "raw"):
            return False
        this = [c for c in run.state.committed if c.attempt == run.state.attempt]
        last = max((c.committed_at for c in this), default=self.clock())
        run.state.purge_due = last + self.cfg.purge_grace_s
        self._save(run, "purge")
        return True

    def _phase_purge(self, run: Run, deadline: float) -> bool:
        st = run.state
        if st.purge_due is not None and self.clock() < st.purge_due:
            return False
        for c in st.committed:
            if c.purged:
                continue
            ds = self.datasets[c.dataset]
            st.old_generation_versions_deleted += delete_versions(
                self.cfg.lake_bucket, old_generation_versions(self.cfg.lake_bucket, ds, c.partition, c.generation))
            c.purged = True
        lake_results = RunWorkspace(self.ws, run.id).all_results(st, "lake")
        subjects, wanted = self.subjects(run), fingerprints(lake_results)
        own = own_staging(lake_results)
        in_flight = 0
        for ds_name, subs in sorted(subjects.by_dataset.items()):
            ds = self.datasets[ds_name]
            # the files this run staged are its rewrites, without the subjects' rows: nothing to delete there
            # (verification still probes every hidden copy, these included)
            hits, _ = sweep.scan_dataset(self.cfg.lake_bucket, self.cfg.database, ds, subs.columns(ds),
                                         wanted=wanted.get(ds_name), salt=self.salt, skip_staged=own)
            done = sweep.purge(self.cfg.lake_bucket, hits, self.committer)
            in_flight += done["in_flight"]
            for kind, n in done["deleted"].items():
                st.hidden_deleted[kind] = st.hidden_deleted.get(kind, 0) + n
        if st.in_flight_since is None:
            st.in_flight_since = self.clock()
        if in_flight and self.clock() - st.in_flight_since < self.committer.settings.grace_seconds + IN_FLIGHT_MARGIN_S:
            # staged copies of commits not finished (or abandoned): the writer commits them (then they are
            # deleted here) or the committer's cleanup, run every tick, deletes them after its grace
            st.purge_due = self.clock() + IN_FLIGHT_POLL_S
            self._save(run)
            self.ports.send(self.cfg.run_queue_url, {"action": "advance", "run_id": run.id,
                                                     "delay_s": IN_FLIGHT_POLL_S})
            return False
        st.in_flight_since = None
        self._save(run)
        self.hook("purged")
        self._move_requests(run, {State.ERASING}, State.VERIFYING, "verification starts")
        self._save(run, "verify")
        return True

    def _phase_verify(self, run: Run, deadline: float) -> bool:
        st, rws = run.state, RunWorkspace(self.ws, run.id)
        key = rws.verify_key(st.attempt)
        report = rws.get(key)
        if report is None:  # a tick that died while finalising reuses the verdict its requests got
            subjects = self.subjects(run)
            lake = self._verify_lake(run, subjects, deadline)
            if lake is None:
                return False  # the scan continues in the next tick from where it stopped
            requests = []
            for rid in st.requests:
                with contextlib.suppress(NotFound):
                    requests.append(self.store.get(rid))
            report = verification_report(self.cfg, self.datasets, st, RunResults.load(rws, st), subjects, lake,
                                         requests, salt=self.salt, clock=self.clock)
            rws.put(key, report)
            self.hook("verified")
        st.verifications.append(Verdict(attempt=st.attempt, passed_all=all(report["passed"].values()),
                                        at=report["at"]))
        # another attempt cannot help a request whose ids are gone: it fails in _finalize
        failing = [rid for rid, ok in report["passed"].items() if not ok and rid not in report.get("vault_missing", [])]
        if failing and st.attempt < self.cfg.max_attempts:
            self._move_requests(run, {State.VERIFYING}, State.ERASING,
                                f"verification found rows left; attempt {st.attempt + 1}")
            st.attempt += 1
            self._save(run, "find")
            return True
        self._finalize(run, report)
        return self._finish(run)

    def _verify_lake(self, run: Run, subjects: RunSubjects, deadline: float) -> dict[str, Any] | None:
        """Probe every file under every current Glue location, resumably (a big lake takes several ticks)."""
        rws = RunWorkspace(self.ws, run.id)
        key = rws.verify_lake_key(run.state.attempt)
        wanted = self.fingerprints(run)
        doc = rws.get(key)
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
                rws.put(key, doc)
                return None
            ds_name, location = doc["partitions"][doc["next"]]
            verify.merge_lake(doc["datasets"][ds_name], verify.verify_partition(
                self.cfg.lake_bucket, location, subjects.by_dataset[ds_name], self.datasets[ds_name],
                wanted=wanted.get(ds_name, ()), salt=self.salt))
            doc["next"] += 1
            if doc["next"] % FIND_SAVE_EVERY == 0:
                rws.put(key, doc)
        rws.put(key, doc)
        datasets: dict[str, Any] = doc["datasets"]
        return datasets

    # -- the end --------------------------------------------------------------------------------
    def _finalize(self, run: Run, report: dict[str, Any]) -> None:
        """Per request: terminal state, certificate, ErasureCompleted (each step repeatable after a crash)."""
        results = RunResults.load(RunWorkspace(self.ws, run.id), run.state)
        ids = self.subjects(run).ids  # read once: a request's vault item goes when it ends
        for rid in run.state.requests:
            req = self.store.get(rid)
            if req.terminal and req.result.get("announced"):
                continue
            evidence = request_evidence(req, run.state, results, report, self.datasets, ids, salt=self.salt)
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
        RunWorkspace(self.ws, run.id).delete()
        with contextlib.suppress(Conflict):  # another tick finished it
            self._save(run, "done", finished=True)
        return False
