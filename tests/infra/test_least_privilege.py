"""Least privilege on data, over every role of the whole program (all stacks, run under the mock runtime).

* Each function may put only the events its own code emits (per the event contracts): the PutEvents
  condition is checked against the contract classes the service's source constructs, so no platform
  role can emit `ErasureRequested` (the one event carrying subject ids).
* The erasure records and the vault live in tables of the erasure stack; ingest, transform and
  compact cannot name them, and only the erasure functions reach the vault, each with what it needs.
* The vault is never backed up (no point-in-time recovery), with a TTL as a backstop.
"""

from __future__ import annotations

import ast
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from contracts import events, naming
from tests.infra.harness import CORE_SENTINELS, Stack, build

ROOT = Path(__file__).resolve().parents[2]
EVENT_CLASSES = {cls.__name__: cls for cls in events.EVENT_TYPES.values()}


@pytest.fixture(scope="module")
def program() -> dict[str, Stack]:
    return {c: build(naming.stack_name(c, "dev")) for c in naming.COMPONENTS}


def roles(stacks: dict[str, Stack]) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Every role of the program: name → (trust policy, statements of its inline policies)."""
    out: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for stack in stacks.values():
        for role in stack.of_type("aws:iam/role:Role"):
            out[role.inputs["name"]] = (json.loads(role.inputs["assumeRolePolicy"]), [])
        for pol in stack.of_type("aws:iam/rolePolicy:RolePolicy"):
            out[pol.inputs["role"]][1].extend(json.loads(pol.inputs["policy"])["Statement"])
    return out


def actions(st: dict[str, Any]) -> list[str]:
    return st["Action"] if isinstance(st["Action"], list) else [st["Action"]]


def resources(st: dict[str, Any]) -> list[str]:
    return st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]


def service_of(role_name: str) -> str:
    """`etl-dev-erasure-run-role` → `erasure`: the services/ package whose code the function runs ("" for core's)."""
    purpose = role_name.removeprefix(naming.prefix("dev") + "-")
    return next((s for s in naming.SERVICES if purpose == f"{s}-role" or purpose.startswith(f"{s}-")), "")


@cache
def emitted_by(service: str) -> frozenset[str]:
    """Detail-types whose contract class the service's code constructs (`events.X(...)` or `X(...)`)."""
    found: set[str] = set()
    for path in (ROOT / "services" / service).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in EVENT_CLASSES:
                found.add(EVENT_CLASSES[name].DETAIL_TYPE)
    return frozenset(found)


def test_the_contract_scan_sees_what_services_emit() -> None:
    """The scan above is the test's ground truth: it must find the events we know each service publishes."""
    assert emitted_by("ingest") == {"RawObjectStored", "ObjectRejected", "IngestFailed"}
    assert {"ChunkPlanned", "PartitionFilesAdded", "ObjectTransformed", "ObjectFailed"} == emitted_by("transform")
    assert emitted_by("compact") == {"PartitionCompacted"}
    assert emitted_by("erasure") == {"ErasureCompleted"}
    assert not any(events.ErasureRequested.DETAIL_TYPE in emitted_by(s) for s in naming.SERVICES)


def test_each_function_may_put_only_its_own_events(program: dict[str, Stack]) -> None:
    allowed_by_service: dict[str, set[str]] = {}
    checked = 0
    for role, (trust, statements) in roles(program).items():
        principal = trust["Statement"][0]["Principal"]["Service"]
        for st in statements:
            if not any(a.lower() in ("events:putevents", "events:*", "*") for a in actions(st)):
                continue
            checked += 1
            if principal == "events.amazonaws.com":
                # core's forwarder: assumed only by EventBridge for the landing rule's target; what it forwards is
                # fixed by that rule's pattern (aws.s3 Object Created of one bucket, tests/infra/test_core.py)
                assert role == naming.name("dev", "forward-landing") and actions(st) == ["events:PutEvents"]
                continue
            assert principal == "lambda.amazonaws.com", role
            assert actions(st) == ["events:PutEvents"], f"{role}: PutEvents goes in a statement of its own: {st}"
            cond = st.get("Condition")
            assert cond and set(cond) == {"StringEquals"}, f"{role}: PutEvents without an exact condition: {st}"
            sources, types = cond["StringEquals"]["events:source"], cond["StringEquals"]["events:detail-type"]
            assert set(cond["StringEquals"]) == {"events:source", "events:detail-type"}
            classes = [events.EVENT_TYPES[t] for t in types]
            assert sorted(sources) == sorted({c.SOURCE for c in classes}) and len(sources) == 1, (
                f"{role}: the source must be the one its events are defined with: {st}")
            service = service_of(role)
            assert set(types) <= emitted_by(service), f"{role} may put events its code never emits: {types}"
            assert events.ErasureRequested.DETAIL_TYPE not in types, f"{role} could emit ErasureRequested"
            assert resources(st) == [CORE_SENTINELS["busArn"]], f"{role}: the platform bus only: {st}"
            allowed_by_service.setdefault(service, set()).update(types)
    assert checked
    # and what a service emits, one of its functions may put (or it would fail at runtime)
    assert {s: frozenset(t) for s, t in allowed_by_service.items()} == {
        s: emitted_by(s) for s in naming.SERVICES if emitted_by(s)}


def test_only_the_requester_policy_may_send_erasure_requests(program: dict[str, Stack]) -> None:
    """The intake path: systems filing requests get the erasure stack's managed policy; nothing else grants it."""
    erasure = program["erasure"]
    (managed,) = erasure.of_type("aws:iam/policy:Policy")
    assert managed.inputs["name"] == "etl-dev-erasure-requester"
    doc = json.loads(managed.inputs["policy"])["Statement"]
    put = [st for st in doc if "events:PutEvents" in actions(st)]
    assert put == [{"Sid": "RequestErasure", "Effect": "Allow", "Action": ["events:PutEvents"],
                    "Resource": [CORE_SENTINELS["busArn"]],
                    "Condition": {"StringEquals": {"events:source": [events.ErasureRequested.SOURCE],
                                                   "events:detail-type": [events.ErasureRequested.DETAIL_TYPE]}}}]
    (api,) = [st for st in doc if st["Sid"] == "ErasureApi"]
    api_id = erasure.one("aws:apigatewayv2/api:Api", "erasure-api").id
    assert actions(api) == ["execute-api:Invoke"] and all(f":{api_id}/*/" in r for r in resources(api))
    assert any(r.endswith("/*/POST/erasure-requests") for r in resources(api))
    assert any(r.endswith("/*/GET/erasure-requests/*/certificate") for r in resources(api))
    assert not any(r.endswith("/approve") for r in resources(api)), "a requester does not approve (four eyes)"
    assert erasure.run.outputs["requesterPolicyArn"] == managed.state["arn"]


def dynamodb_statements(stacks: dict[str, Stack]) -> dict[str, list[dict[str, Any]]]:
    return {role: [st for st in sts if any(a.startswith("dynamodb:") for a in actions(st))]
            for role, (_, sts) in roles(stacks).items()}


def test_erasure_records_and_vault_are_out_of_reach_of_the_data_services(program: dict[str, Stack]) -> None:
    erasure = program["erasure"]
    tables = {t.name: t for t in erasure.of_type("aws:dynamodb/table:Table")}
    records, vault = tables["erasure-records"], tables["erasure-vault"]
    env = erasure.one("aws:lambda/function:Function", "erasure-run-function").inputs["environment"]["variables"]
    assert env["ERASURE_TABLE"] == records.inputs["name"] == "etl-dev-erasure"
    assert env["VAULT_TABLE"] == vault.inputs["name"] == "etl-dev-erasure-vault"
    assert len({env["ERASURE_TABLE"], env["VAULT_TABLE"], env["STATE_TABLE"]}) == 3, "no erasure item in state"
    core_tables = {t.inputs["name"] for t in program["core"].of_type("aws:dynamodb/table:Table")}
    assert not {records.inputs["name"], vault.inputs["name"]} & core_tables

    vault_arn, records_arn = vault.state["arn"], records.state["arn"]
    vault_use: dict[str, set[str]] = {}
    for role, statements in dynamodb_statements(program).items():
        for st in statements:
            for r in resources(st):
                assert "*" not in r, f"{role}: a wildcard table resource reaches every table: {st}"
            if vault_arn in resources(st) or records_arn in resources(st):
                assert service_of(role) == "erasure", f"{role} can reach the erasure records or the vault: {st}"
            if vault_arn in resources(st):
                assert resources(st) == [vault_arn], f"{role}: vault access in a statement of its own: {st}"
                vault_use.setdefault(role, set()).update(actions(st))
        if service_of(role) in ("ingest", "transform", "compact"):
            reached = {r for st in statements for r in resources(st)}
            assert reached <= {"arn:aws:dynamodb:eu-west-1:123456789012:table/ref-state",
                               "arn:aws:dynamodb:eu-west-1:123456789012:table/ref-idem"}, (role, reached)
    fill, read = {"dynamodb:PutItem", "dynamodb:DeleteItem"}, {"dynamodb:GetItem", "dynamodb:DeleteItem"}
    assert vault_use == {"etl-dev-erasure-api-role": fill, "etl-dev-erasure-intake-role": fill,
                         "etl-dev-erasure-run-role": read, "etl-dev-erasure-worker-role": read}


def test_the_vault_is_never_backed_up_and_expires_as_a_backstop(program: dict[str, Stack]) -> None:
    tables = {t.name: t.inputs for t in program["erasure"].of_type("aws:dynamodb/table:Table")}
    vault, records = tables["erasure-vault"], tables["erasure-records"]
    assert vault["pointInTimeRecovery"] == {"enabled": False}, "a restorable vault keeps ids past their erasure"
    assert vault["ttl"] == {"attributeName": "expires_at", "enabled": True}
    assert vault["tags"]["etl:backup"] == "never", "tag-based AWS Backup plans can exclude it by this tag"
    assert "streamEnabled" not in vault or not vault["streamEnabled"], "a stream would copy ids for 24 h"
    assert records["pointInTimeRecovery"] == {"enabled": True}, "the audit trail (hashes only) is recoverable"
    assert vault["billingMode"] == records["billingMode"] == "PAY_PER_REQUEST"


def test_the_archive_keeps_no_erasure_request(program: dict[str, Stack]) -> None:
    """The bus archive (30-day replay) would otherwise keep ErasureRequested, ids in clear, past the erasure."""
    archive = program["core"].one("aws:cloudwatch/eventArchive:EventArchive", "platform-archive")
    pattern = json.loads(archive.inputs["eventPattern"])
    assert pattern == {"detail-type": [{"anything-but": [events.ErasureRequested.DETAIL_TYPE]}]}
