"""What verification proves, against moto server: every copy in the lake bucket (staging, old
generations, old versions), the erased rows' other personal values, and requests it cannot finish."""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from contracts import aws
from contracts.commits import PartitionRef
from services.erasure import sweep
from services.erasure.model import State
from services.erasure.workspace import Workspace, certificate_key
from tests.services.erasure_world import DATASETS, World, orders_jsonl, seed


def lake_versions(w: World, prefix: str) -> list[dict[str, Any]]:
    out = []
    for page in aws.client("s3").get_paginator("list_object_versions").paginate(Bucket=w.cfg.lake_bucket,
                                                                               Prefix=prefix):
        out += page.get("Versions", [])
    return out


def rows_of(w: World, prefix: str, column: str, ids: set[int]) -> int:
    """Rows with one of `ids` in `column` over every object version under `prefix`, read whole."""
    s3, n = aws.client("s3"), 0
    for v in lake_versions(w, prefix):
        body = s3.get_object(Bucket=w.cfg.lake_bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
        t = pq.read_table(pa.BufferReader(body))
        if column in t.column_names:
            n += int(pc.sum(pc.is_in(t[column], value_set=pa.array(sorted(ids), pa.int64()))).as_py() or 0)
    return n


def certificate(w: World, rid: str) -> dict[str, Any]:
    return json.loads(Workspace(w.cfg.erasure_bucket).get_bytes(certificate_key(rid, "json")))


def test_committed_staging_copies_of_subject_rows_are_purged_and_checked(world: World) -> None:
    w = world
    seed(w)
    assert rows_of(w, "_staging/orders/", "customer_id", {7, 8}) > 0, "transform's staged copies hold the rows"
    assert rows_of(w, "_staging/customers/", "customer_id", {7, 8}) > 0
    others = rows_of(w, "_staging/orders/", "customer_id", {1, 9})
    rid = w.request(["7", "8"])
    w.drive()
    assert w.store.get(rid).state == State.COMPLETED, w.store.get(rid).error
    for ds in ("orders", "customers"):
        assert rows_of(w, f"_staging/{ds}/", "customer_id", {7, 8}) == 0, f"a staged copy of {ds} keeps a subject row"
        assert rows_of(w, f"{ds}/", "customer_id", {7, 8}) == 0, "no version of any generation keeps one"
    assert rows_of(w, "_staging/orders/", "customer_id", {1, 9}) <= others
    cert = certificate(w, rid)
    assert cert["copies_purged"]["hidden_lake_copies_deleted"].get("staging", 0) >= 3
    checks = {(c["dataset"], c["copy"]): c for c in cert["verification"]["checks"]["checked"]}
    hidden = checks[("orders", "lake copies readers do not see: staging, old generations, old versions")]
    assert "staging" in hidden["checked"] and hidden["left"] == 0
    wrote = checks[("customers", "files this run wrote")]
    assert wrote["left"] == 0 and "dictionary page" in wrote["checked"] and not wrote["checked"].startswith("0 ")
    assert cert["verification"]["checks"]["not_checked"], "the certificate says what it did not check"
    md = Workspace(w.cfg.erasure_bucket).get_bytes(certificate_key(rid, "md")).decode()
    assert "What was checked" in md and "Not checked by this service" in md


def test_verification_fails_when_a_staged_copy_keeps_a_row(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    seed(w)
    monkeypatch.setattr(sweep, "purge", lambda *a, **k: {"deleted": {}, "left": [], "in_flight": 0})
    rid = w.request(["7"], ["orders"])
    w.drive()
    req = w.store.get(rid)
    assert req.state == State.FAILED
    assert "lake copies readers do not see" in (req.error or "")
    assert "7" not in (req.error or "").replace(rid, "").replace("hmac", "")


def person_csv(rows: list[tuple[int, str, str, str]]) -> bytes:
    lines = [f"{i},{name},{email},{phone},GB,2023-01-15" for i, name, email, phone in rows]
    return ("customer_id,name,email,phone,country,signup_date\n" + "\n".join(lines) + "\n").encode()


def test_an_erased_rows_personal_values_under_another_id_fail_verification(world: World) -> None:
    """Customer 7 was also loaded as 1007 (same name, e-mail, phone): that row is theirs, and the
    certificate must not say their data is gone. Shared single values (a name) are not survivors."""
    w = world
    w.land("customers", person_csv([(7, "Ann Lee", "ann@x.example", "+4401"), (9, "Ann Lee", "other@x.example",
                                                                             "+4409")]), "a.csv")
    rid_clean = w.request(["7"], ["customers"])
    w.drive()
    assert w.store.get(rid_clean).state == State.COMPLETED, "a shared name alone is not a survivor"
    w.land("customers", person_csv([(8, "Bo Ma", "bo@x.example", "+4402"), (1008, "Bo Ma", "bo@x.example",
                                                                          "+4402")]), "b.csv")
    rid = w.request(["8"], ["customers"])
    w.drive()
    req = w.store.get(rid)
    assert req.state == State.FAILED, "a copy of the erased row under another id survives"
    assert "carry an erased row's other personal values" in (req.error or "")
    for value in ("Bo Ma", "bo@x.example", "+4402"):
        assert value not in json.dumps(certificate(w, rid))
    assert not list(Workspace(w.cfg.erasure_bucket).keys("runs/")), "fingerprints go with the run's workspace"


def test_a_file_it_cannot_read_ends_failed_with_the_evidence_so_far(world: World) -> None:
    w = world
    seed(w)
    ref = PartitionRef("orders", {"order_year": "2024", "order_month": "02"})
    op = "test:corrupt"
    staged = w.committer.stage(ref, op, "corrupt.parquet", b"PAR1 this is not parquet PAR1", 1)
    w.committer.append(ref, [staged], op)
    rid = w.request(["7"], ["orders"])
    w.drive()
    req = w.store.get(rid)
    assert req.state == State.FAILED, "a file that cannot be read cannot be certified clean"
    assert "unreadable" in (req.error or "") and "corrupt.parquet" in (req.error or "")
    cert = certificate(w, rid)
    assert cert["outcome"] == "FAILED" and not cert["verification"]["passed"]
    assert cert["datasets"]["orders"]["rows_removed"] >= 5, "the readable files were still erased (evidence)"
    assert "\"7\"" not in json.dumps(cert)


def test_a_copy_it_cannot_read_at_verification_ends_failed_not_stuck(world: World,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A raw copy whose read fails (e.g. a checksum error) must not stop the run forever nor pass."""
    from services.erasure import verify

    w = world
    seed(w)

    def unreadable(*args: Any, **kwargs: Any) -> str:
        raise OSError("checksum mismatch")

    monkeypatch.setattr(verify, "raw_object_clean", unreadable)
    rid = w.request(["7"], ["orders"])
    w.drive()
    req = w.store.get(rid)
    assert req.state == State.FAILED and "unreadable (OSError)" in (req.error or "")
    assert certificate(w, rid)["outcome"] == "FAILED"


def test_a_staged_copy_of_an_unfinished_commit_is_waited_for_not_deleted(world: World) -> None:
    """A writer staged a file holding subject 7's row and has not committed it (yet, or ever): erasure
    must not delete it under a commit that may be rolling forward, nor certify while it exists."""
    from services.transform.core import transform
    from services.transform.parquet import parquet_bytes

    w = world
    seed(w)
    part = transform(DATASETS["orders"], orders_jsonl([(900, 7)]), object_id="inflight", source="test").partitions[0]
    ref = PartitionRef("orders", part.values)
    staged = w.committer.reserve_staging(ref, "compact:lost-a-race", "merged.parquet")
    aws.client("s3").put_object(Bucket=w.cfg.lake_bucket, Key=staged,
                                Body=parquet_bytes(part.table, DATASETS["orders"]))
    rid = w.request(["7"], ["orders"])
    with pytest.raises(AssertionError, match="did not finish"):
        w.drive(rounds=40)
    req = w.store.get(rid)
    assert req.state == State.ERASING and w.store.get_run(req.run_id).state.phase == "purge"
    assert lake_versions(w, staged), "the staged file is left to its writer"
    state = w.store.get_run(req.run_id).state
    assert state.in_flight_since is not None and state.purge_due is not None and state.purge_due > time.time(), \
        "it looks again later"
    aws.client("s3").delete_object(Bucket=w.cfg.lake_bucket, Key=staged)  # the committer's cleanup, after grace
    for v in lake_versions(w, staged):
        aws.client("s3").delete_object(Bucket=w.cfg.lake_bucket, Key=staged, VersionId=v["VersionId"])
    w.engine.clock = lambda: time.time() + 60  # the delayed tick arrives
    w.drive()
    assert w.store.get(rid).state == State.COMPLETED, w.store.get(rid).error
