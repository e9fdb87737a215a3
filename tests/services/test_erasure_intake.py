"""Hashing, subject typing, intake validation (value-free errors), states and the certificate rendering."""

from __future__ import annotations

import json

import pytest

from contracts.datasets import load_datasets
from services.erasure import certificate
from services.erasure.hashing import SaltError, salt_id, subject_hash
from services.erasure.intake import InvalidRequest, parse
from services.erasure.model import ErasureRequest, State, TransitionError, new_request_id
from services.erasure.subjects import Subjects, typed_value

DATASETS = load_datasets()
SALT = b"unit-test-salt-0123456789"


def test_hash_is_keyed_stable_and_hides_the_id() -> None:
    h = subject_hash("42", SALT)
    assert h == subject_hash(" 42 ", SALT) and h.startswith("hmac-sha256:") and "42" not in h[12:14]
    assert h != subject_hash("42", SALT + b"x"), "another salt, another hash"
    assert len(salt_id(SALT)) == 16 and salt_id(SALT) not in h
    with pytest.raises(SaltError, match="at least 16 bytes"):
        subject_hash("42", b"short")


def test_subjects_never_print_their_ids() -> None:
    s = Subjects.of(["123456789", "123456789", "987654321"], SALT)
    assert len(s.ids) == 2
    assert "123456789" not in repr(s) and "987654321" not in f"{s}"


@pytest.mark.parametrize(("raw", "ctype", "value"), [
    ("42", "int64", 42), ("+42", "int64", 42), ("042", "int64", 42), ("4.2", "int64", None),
    ("2147483648", "int32", None), ("x", "int64", None), (" ab ", "string", "ab"),
])
def test_ids_are_typed_per_column(raw: str, ctype: str, value: object) -> None:
    assert typed_value(raw, ctype) == value


def test_valid_request_gets_its_scope() -> None:
    body = parse({"subject_ids": ["42"], "reason": "GDPR art. 17", "ticket": "T-1"}, DATASETS)
    assert body.datasets == ["customers", "orders", "usage_events"]  # every contract with subject columns
    assert parse({"subject_ids": ["42"], "reason": "r", "datasets": ["orders"]}, DATASETS).datasets == ["orders"]


@pytest.mark.parametrize(("data", "expected"), [
    ({"reason": "r"}, "subject_ids: Field required"),
    ({"subject_ids": [], "reason": "r"}, "subject_ids: List should have at least 1 item"),
    ({"subject_ids": ["42"]}, "reason: Field required"),
    ({"subject_ids": ["42"], "reason": "r", "colour": "red"}, "colour: unknown field"),
    ({"subject_ids": ["42"], "reason": "r", "datasets": ["nope"]}, "datasets: 'nope' is not a dataset"),
    ({"subject_ids": ["  "], "reason": "r"}, "subject_ids[0] is empty"),
    ({"subject_ids": ["42", "secret-id-x"], "reason": "r"}, "subject_ids[1] is not a valid value"),
    ({"subject_ids": [42], "reason": "r"}, "subject_ids.0: Input should be a valid string"),
    ([1, 2], "the body must be a JSON object"),
])
def test_invalid_requests_say_what_is_wrong_without_echoing_ids(data: object, expected: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse(data, DATASETS)
    message = "; ".join(err.value.errors)
    assert expected in message
    assert "secret-id-x" not in message


def test_states_move_only_forward_and_cancel_only_before_erasing() -> None:
    req = ErasureRequest(new_request_id(), State.RECEIVED, 0, 1, ["orders"], "r", "me", ["h"])
    req.move(State.SCHEDULED, 1)
    req.move(State.FINDING, 2)
    req.move(State.ERASING, 3)
    with pytest.raises(TransitionError, match="ERASING to CANCELLED"):
        req.move(State.CANCELLED, 4)
    assert [h["state"] for h in req.history] == ["SCHEDULED", "FINDING", "ERASING"]


def test_certificate_renders_hashes_and_evidence_never_ids() -> None:
    subjects = Subjects.of(["7777777"], SALT)
    req = ErasureRequest("er-20250101000000-abcdefabcd", State.COMPLETED, 0, 86400 * 30, ["orders"], "GDPR", "dpo",
                         list(subjects.hashes), ticket="T-9", run_id="run-1",
                         history=[{"at": 0, "state": "RECEIVED"}, {"at": 5, "state": "COMPLETED"}])
    find = {"files_considered": 4, "files_scanned": 1}
    part = {"partition": {"order_year": "2024", "order_month": "05"}, "generation": 3, "files": [
        {"key": "orders/order_year=2024/order_month=05/gen=2/a.parquet", "rows_in": 10, "rows_removed": 2,
         "rows_out": 8, "new_key": "orders/order_year=2024/order_month=05/gen=3/b.parquet"}]}
    evidence = {
        "attempts": 1,
        "datasets": {"orders": {"rows_removed": 2, "partitions": [part], "files_rewritten": 1, "files_removed": 0,
                                "find": find}},
        "copies": {"quarantine_files": [], "quarantine_rows_removed": 0, "raw_objects": [{"key": "k"}],
                   "raw_lines_blanked": 2, "landing_deleted": 1, "old_generation_versions_deleted": 3,
                   "versions_deleted": 1},
        "verification": {"passed": True, "at": "2025-01-01T00:00:05Z", "problems": [], "datasets": {"orders": {
            "lake": {"rows_remaining": {}, "scan": {"files_considered": 4}}, "quarantine": {"rows_remaining": 0},
            "old_generations": [], "raw": []}}},
    }
    cert = certificate.build(req, evidence, salt_id=salt_id(SALT), issued_at=10)
    text = certificate.render_markdown(cert)
    assert cert["outcome"] == "COMPLETED" and subjects.hashes[0] in text and "gen=3/b.parquet" in text
    assert "7777777" not in text and "7777777" not in json.dumps(cert)
    assert "**PASSED**" in text and "| orders | 2 | 1 | 1 | 0 | 1 of 4 |" in text


def test_error_messages_are_redacted_to_hashes() -> None:
    from services.erasure.hashing import redact

    text = redact("PartitionBusy: p#t#tenant=42/x holds 142 and 42.5", ["42"], SALT)
    assert subject_hash("42", SALT) in text and "tenant=42/" not in text and "142" in text


def test_a_partition_keyed_by_the_subject_is_hashed_in_the_certificate() -> None:
    from services.erasure.evidence import public_partition
    from services.erasure.runstate import TaskResult

    orders = DATASETS["orders"]
    keyed = orders.model_copy(update={"partitioning": (*orders.partitioning, orders.partitioning[0].model_copy(
        update={"name": "cust", "source": "customer_id", "transform": "identity"}))})
    key = "orders/order_year=2024/order_month=05/cust=7777777/gen=1/a.parquet"
    result = TaskResult(task_id="1.lake.00000", kind="lake", dataset="orders", generation=2,
                        partition={"order_year": "2024", "order_month": "05", "cust": "7777777"},
                        files=[{"key": key, "new_key": key.replace("gen=1", "gen=2")}])
    out = public_partition(keyed, result, 1, SALT)
    assert "7777777" not in json.dumps(out)
    assert out["partition"]["cust"] == subject_hash("7777777", SALT)
    assert out["files"][0]["key"].startswith("orders/order_year=2024/order_month=05/cust=hmac-sha256:")
