"""The run engine against moto server: real S3 (versions), DynamoDB transactions, Glue, pyarrow over S3.

Workers and ticks are driven in-process from two in-memory queues, so a crash can be injected at
every step of a run (the hook raises once) and the test proves that the next delivery completes it:
same lake, same certificate, nothing erased twice, nothing left.
"""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import pytest

from contracts import aws, layout
from services.erasure import worker
from services.erasure.model import State
from services.erasure.store import VAULT, _key
from services.erasure.vault import seal, unseal
from services.erasure.workspace import Workspace, certificate_key
from tests.services.erasure_world import DAY, World, orders_jsonl, seed, seed_small, subject_rows


def test_a_run_erases_every_copy_and_certifies_it(world: World) -> None:
    w = world
    objs = seed(w)
    before = {ds: w.lake_rows(ds) for ds in ("customers", "orders")}
    rid = w.request(["7", "8"])
    w.drive()
    req = w.store.get(rid)
    assert req.state == State.COMPLETED, req.error
    after = {ds: w.lake_rows(ds) for ds in ("customers", "orders")}
    for ds in after:
        gone = subject_rows(before[ds], {7, 8}, 1 if ds == "orders" else 0)
        assert gone, f"the seed puts subject rows in {ds}"
        assert after[ds] == before[ds] - gone, "exactly the subjects' rows are gone, every other row is intact"
    cert = json.loads(Workspace(w.cfg.erasure_bucket).get_bytes(certificate_key(rid, "json")))
    assert cert["outcome"] == "COMPLETED" and cert["verification"]["passed"]
    assert cert["datasets"]["customers"]["rows_removed"] == 2 and cert["datasets"]["orders"]["rows_removed"] == 6
    assert cert["copies_purged"]["quarantine_rows_removed"] == 2
    assert cert["copies_purged"]["raw_lines_blanked"] >= 5 and cert["copies_purged"]["landing_deleted"] >= 3
    text = json.dumps(cert) + Workspace(w.cfg.erasure_bucket).get_bytes(certificate_key(rid, "md")).decode()
    assert '"7"' not in text and "u7@example.com" not in text
    # raw copies: subject lines blank, other lines intact, one version each; untouched object untouched
    s3 = aws.client("s3")
    raw_c2 = gzip.decompress(s3.get_object(Bucket=w.cfg.raw_bucket, Key=layout.raw_key(
        "customers", DAY, objs["c2"], "b.csv.gz"))["Body"].read()).decode().splitlines()
    assert raw_c2 == ["customer_id,name,email,phone,country,signup_date", "3,Name 3,u3@example.com,+44200000003,GB,"
                      "2023-01-15", "", ""]
    versions = s3.list_object_versions(Bucket=w.cfg.raw_bucket, Prefix=f"orders/received={DAY}/{objs['o1']}/")
    assert len(versions.get("Versions", [])) == 1
    untouched = s3.list_object_versions(Bucket=w.cfg.raw_bucket, Prefix=f"orders/received={DAY}/{objs['o2']}/")
    assert len(untouched["Versions"]) == 1 and untouched["Versions"][0]["IsLatest"]
    # quarantine: the subject's refused rows are gone with every old version of their files
    q = s3.list_object_versions(Bucket=w.cfg.quarantine_bucket, Prefix="orders/")
    assert not q.get("Versions"), "o3's only refused row was subject 7's: the file is deleted, every version"
    # old generations of rewritten partitions are gone (all versions)
    lake_keys = [v["Key"] for v in s3.list_object_versions(Bucket=w.cfg.lake_bucket, Prefix="orders/")
                 .get("Versions", [])]
    current = {loc.split("/", 3)[3] for loc in w.generations("orders").values()}
    assert all(any(k.startswith(c) for c in current) for k in lake_keys), "only current generations remain"
    (event,) = w.published
    assert event.request_id == rid and event.verified and event.rows_removed == 8
    assert not w.alerts
    assert w.store.vault_item(rid) is None, "no clear id is kept once the request is done"


def test_partitions_without_subjects_keep_their_generation(world: World) -> None:
    w = world
    w.land("orders", orders_jsonl([(1, 7), (40, 1)]), "x.jsonl")  # 2024-02 holds 7; 2024-01 … holds 1 only
    w.land("orders", orders_jsonl([(4, 1)]), "y.jsonl")
    before = w.generations("orders")
    w.request(["7"], ["orders"])
    w.drive()
    after = w.generations("orders")
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {("2024", "02")}, changed


@pytest.mark.parametrize("held", [True, False], ids=["held-in-memory", "streamed"])
def test_a_rewritten_file_is_staged_from_memory_or_streamed_and_committed(
        world: World, monkeypatch: pytest.MonkeyPatch, held: bool) -> None:
    from services.erasure import find

    if not held:  # no file fetched whole: REWRITE reads and writes S3 streams
        monkeypatch.setattr(find, "WHOLE_FILE_BYTES", 0)
    w = world
    seed_small(w)
    before = w.lake_rows("orders")
    rid = w.request(["7"], ["orders"])
    w.drive()
    req = w.store.get(rid)
    assert req.state == State.COMPLETED, req.error
    assert w.lake_rows("orders") == before - subject_rows(before, {7}, 1)
    cert = json.loads(Workspace(w.cfg.erasure_bucket).get_bytes(certificate_key(rid, "json")))
    files = [f for p in cert["datasets"]["orders"]["partitions"] for f in p["files"]]
    assert files and all(f["bytes_out"] > 0 for f in files if f["rows_out"]), "the staged objects' sizes"
    s3 = aws.client("s3")
    assert all(f["bytes_out"] == s3.head_object(Bucket=w.cfg.lake_bucket, Key=f["new_key"])["ContentLength"]
               for f in files if f["rows_out"])


@pytest.mark.parametrize("step", [
    "phase:lake", "file-rewritten", "staged", "committed", "task:lake", "task:quarantine", "phase:raw", "task:raw",
    "phase:purge", "purged", "phase:verify", "verified", "terminal", "certified",
])
def test_a_crash_at_any_step_is_completed_by_the_retry(world: World, step: str) -> None:
    w = world
    seed_small(w)
    before = w.lake_rows("orders")
    rid = w.request(["7"], ["orders"], client="crash-test")
    w.crash_at = step
    w.drive()
    assert w.crashes == 1, f"step {step} was never reached"
    req = w.store.get(rid)
    assert req.state == State.COMPLETED, req.error
    assert w.lake_rows("orders") == before - subject_rows(before, {7}, 1)
    assert {e.request_id for e in w.published} == {rid}
    cert = json.loads(Workspace(w.cfg.erasure_bucket).get_bytes(certificate_key(rid, "json")))
    assert cert["datasets"]["orders"]["rows_removed"] == 2 and cert["verification"]["passed"]
    assert cert["copies_purged"]["quarantine_rows_removed"] == 1


def test_cancel_while_finding_rewrites_nothing(world: World) -> None:
    w = world
    seed(w)
    gens = w.generations("orders"), w.generations("customers")
    rid = w.request(["7"])

    def cancel(step: str) -> None:
        if step == "found":
            def change(r: Any) -> bool:
                r.move(State.CANCELLED, time.time(), "test")
                return True
            w.store.update(rid, change, retention_s=60)

    w.engine.hook = cancel
    w.drive()
    assert w.store.get(rid).state == State.CANCELLED
    assert (w.generations("orders"), w.generations("customers")) == gens
    assert not w.published and w.store.vault_item(rid) is None


def test_duplicate_delivery_is_one_request_and_one_certificate(world: World) -> None:
    w = world
    seed(w)
    a = w.request(["8"], client="ticket-42")
    b = w.request(["8"], client="ticket-42")
    assert a == b
    with pytest.raises(Exception, match="different request"):
        w.request(["7"], client="ticket-42")
    w.drive()
    reqs, _ = w.store.list_requests(10)
    assert [r.id for r in reqs] == [a] and len(w.published) == 1


def test_batching_takes_every_pending_request_into_one_run(world: World) -> None:
    w = world
    seed(w)
    ids = [w.request(["7"], ["orders"]), w.request(["8"], ["customers"]), w.request(["9"], ["orders"])]
    w.drive()
    runs = {w.store.get(i).run_id for i in ids}
    assert len(runs) == 1 and all(w.store.get(i).state == State.COMPLETED for i in ids)
    customers = w.lake_rows("customers")
    assert any(r[0] == 7 for r in customers), "request 1 was scoped to orders: customer 7 stays"
    assert not any(r[0] == 8 for r in customers)


def test_a_failed_verification_ends_failed_with_what_remains(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    seed(w)
    rid = w.request(["7"], ["orders"])
    monkeypatch.setattr(worker, "_lake_task", lambda *a, **k: {"generation": None, "files": [], "by_subject": {},
                                                                 "lineage": {}, "rows_removed": 0})
    w.drive()
    req = w.store.get(rid)
    assert req.state == State.FAILED and "lake row(s) left" in (req.error or "")
    assert w.engine.store.get_run(req.run_id).state.attempt == w.cfg.max_attempts
    assert w.alerts and rid in w.alerts[0][0] and "7" not in w.alerts[0][1].replace(rid, "")


@pytest.mark.parametrize("lost_at", ["before the run", "found"])
def test_a_request_whose_vault_item_is_gone_ends_failed_never_completed(world: World, lost_at: str) -> None:
    """The vault's TTL backstop firing on an open request: its ids cannot be searched any more, so it
    must not be certified COMPLETED (nothing of it was erased); the other request of the run is."""
    w = world
    seed_small(w)
    lost, kept = w.request(["7"], ["orders"]), w.request(["1"], ["orders"])

    def expire() -> None:
        w.store.ddb.delete_item(TableName=w.store.vault_table, Key=_key(VAULT + lost))

    if lost_at == "before the run":
        expire()
    else:
        steps = w.hook

        def hook(step: str) -> None:
            if step == lost_at and w.store.vault_item(lost) is not None:
                expire()
            steps(step)

        w.hook = hook  # type: ignore[method-assign]
    w.drive()
    req = w.store.get(lost)
    assert req.state == State.FAILED and req.state != State.COMPLETED
    assert (req.error or "").startswith("subject ids no longer available: vault item missing")
    assert "7" not in (req.error or "") + json.dumps(req.result).replace(lost, "")
    assert w.store.get(kept).state == State.COMPLETED, w.store.get(kept).error
    assert w.store.get_run(req.run_id).state.attempt == 1, "another attempt cannot bring the ids back"
    cert = json.loads(Workspace(w.cfg.erasure_bucket).get_bytes(certificate_key(lost, "json")))
    assert cert["outcome"] == "FAILED" and not cert["verification"]["passed"]
    assert [e.state for e in w.published if e.request_id == lost] == ["FAILED"]
    assert any(lost in subject for subject, _ in w.alerts)


def test_kms_sealed_ids_round_trip(world: World) -> None:
    key = aws.client("kms").create_key()["KeyMetadata"]["KeyId"]
    item = seal("er-x", ["42", "43"], key)
    # the payload is base64 ciphertext, which may contain "42" by chance: check it is not the ids themselves
    assert item["kind"]["S"] == "kms" and item["payload"]["S"] not in (json.dumps(["42", "43"]), '["42","43"]')
    assert not any(token in ("42", "43") for token in json.loads(item["payload"]["S"]))
    assert unseal("er-x", item) == ["42", "43"]
    with pytest.raises(Exception, match="InvalidCiphertext"):
        unseal("er-y", item)



def test_lake_verification_resumes_in_the_next_tick(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A big lake is verified over several invocations: each partition once, none skipped."""
    from services.erasure import verify

    w = world
    seed(w)
    rid = w.request(["7", "8"])
    real, calls = verify.verify_partition, []

    def one_per_tick(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(args[1])
        w.engine.clock = lambda: time.time() + 10_000  # this invocation's budget is spent
        return real(*args, **kwargs)

    real_tick = w.engine.tick

    def tick(**kwargs: Any) -> dict[str, Any]:
        w.engine.clock = time.time  # a fresh invocation
        return real_tick(**kwargs)

    monkeypatch.setattr(verify, "verify_partition", one_per_tick)
    monkeypatch.setattr(w.engine, "tick", tick)
    w.drive(rounds=200)
    assert w.store.get(rid).state == State.COMPLETED
    assert len(calls) == len(set(calls)) > 2, "every partition verified once, over several ticks"


def test_the_purge_skips_the_runs_own_staged_rewrites_and_verification_still_probes_them(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files a run staged are its rewrites (no subject row): the purge does not probe them; the
    verification of hidden copies does, so the certificate still covers them."""
    from contracts.lake import STAGING_ROOT
    from services.erasure import sweep

    w = world
    w.land("orders", orders_jsonl([(1, 7), (5, 1), (2, 7), (6, 1)]), "kept.jsonl")  # 7 beside others: rewrites
    rid = w.request(["7"], ["orders"])
    probed: list[list[str]] = []
    real = sweep.probe_copies

    def recording(bucket: str, copies: Any, *args: Any, **kwargs: Any) -> Any:
        probed.append([c.key for c in copies if c.kind == sweep.STAGING])
        return real(bucket, copies, *args, **kwargs)

    monkeypatch.setattr(sweep, "probe_copies", recording)
    w.drive()
    assert w.store.get(rid).state == State.COMPLETED
    staged = [v["Key"] for v in aws.client("s3").list_object_versions(
        Bucket=w.cfg.lake_bucket, Prefix=f"{STAGING_ROOT}orders/").get("Versions", [])]
    assert len(probed) == 2, "hidden copies probed once at the purge, once at verification"
    purge, verification = map(set, probed)
    own = {k for k in verification if k.rsplit("/", 1)[-1].startswith("erased-")}
    assert len(own) == 2 and not own & purge, "the run's own staged rewrites are left out of the purge's probe"
    assert purge - verification, "the load's staged copies holding the subject were probed and deleted"
    assert verification - own <= purge, "every other staged copy was probed at the purge"
    assert verification == set(staged), "verification probes every staged copy left, the run's own included"
