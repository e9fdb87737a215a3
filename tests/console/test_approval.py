"""Four-eyes approval (etl:erasureApproval): the API function over moto, called as both front doors call it.

A request waits (no pending# index: no run takes it) until someone other than its filer approves it;
console callers need the erasure-approvers group; without the setting nothing waits.
"""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from contracts import aws
from etl.local.http_api import Route, proxy_event
from services.erasure import api
from services.erasure.store import Store

ACCOUNT = "123456789012"


@pytest.fixture
def table(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    tag = uuid.uuid4().hex[:8]
    env = {"AWS_ENDPOINT_URL": moto_endpoint, "BUS_NAME": "bus", "LAKE_BUCKET": "lake", "RAW_BUCKET": "raw",
           "QUARANTINE_BUCKET": "quarantine", "ERASURE_BUCKET": f"erasure-{tag}", "STATE_TABLE": f"state-{tag}",
           "GLUE_DATABASE": "db", "ERASURE_SALT_PARAMETER": f"/test-{tag}/salt", "ERASURE_APPROVAL": "true"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    aws.client("dynamodb").create_table(
        TableName=env["STATE_TABLE"], BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])
    return env["STATE_TABLE"]


def call(method: str, path: str, body: Any = None, *, user: str | None = None,
         groups: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
    """Through the console's door (JWT claims) when `user` is given, else through the IAM door."""
    template = path if "/er-" not in path else path.split("/er-")[0] + "/{id}" + (
        "/" + path.rsplit("/", 1)[1] if path.count("/") > 2 else "")
    route = Route(method, template, "JWT" if user else "AWS_IAM")
    params = {"id": path.split("/")[2]} if "{id}" in template else {}
    claims = {"username": user, "cognito:groups": "[" + " ".join(groups) + "]"} if user else None
    raw = json.dumps(body).encode() if body is not None else b""
    event = proxy_event(route, params, "api", ACCOUNT, method, path, "", {"content-type": "application/json"}, raw,
                        claims)
    resp = api.app.resolve(event, SimpleNamespace(function_name="erasure-api", aws_request_id="r"))
    return resp["statusCode"], json.loads(resp["body"] or "{}")


FILE = {"subject_ids": ["4242"], "reason": "GDPR art. 17", "ticket": "T-4EYES"}


def test_a_request_waits_for_someone_else_s_approval(table: str) -> None:
    status, filed = call("POST", "/erasure-requests", FILE, user="alice", groups=("erasure-filers",
                                                                                   "erasure-approvers"))
    assert status == 202 and filed["state"] == "RECEIVED"
    rid = filed["id"]
    store = Store(table)
    assert store.pending() == [] and [i for i in store.open_requests()]  # not run yet, but its deadline runs
    _, got = call("GET", f"/erasure-requests/{rid}", user="alice", groups=("erasure-filers",))
    assert got["approval"] == {"required": True, "approved_by": None, "approved_at": None}

    status, own = call("POST", f"/erasure-requests/{rid}/approve", user="alice",
                       groups=("erasure-filers", "erasure-approvers"))
    assert status == 403 and "four eyes" in own["message"]
    status, not_approver = call("POST", f"/erasure-requests/{rid}/approve", user="bob", groups=("erasure-readers",))
    assert status == 403 and "erasure-approvers" in not_approver["message"]
    assert store.pending() == []

    status, approved = call("POST", f"/erasure-requests/{rid}/approve", user="carol", groups=("erasure-approvers",))
    assert status == 200 and approved["approval"]["approved_by"] == "cognito:carol"
    assert approved["state"] == "RECEIVED" and approved["history"][-1]["note"] == "approved by cognito:carol"
    assert [p["sk"].split("#", 1)[1] for p in store.pending()] == [rid]
    status, again = call("POST", f"/erasure-requests/{rid}/approve", user="dave", groups=("erasure-approvers",))
    assert status == 409 and "approved by cognito:carol" in again["message"]


def test_iam_callers_approve_too_and_an_unapproved_request_can_be_cancelled(table: str) -> None:
    _, first = call("POST", "/erasure-requests", FILE, user="alice", groups=("erasure-filers",))
    status, approved = call("POST", f"/erasure-requests/{first['id']}/approve")  # IAM: the policy decided
    assert status == 200 and approved["approval"]["approved_by"].endswith(":user/local-developer")
    _, second = call("POST", "/erasure-requests", {**FILE, "ticket": "T-4EYES-2"}, user="alice",
                     groups=("erasure-filers",))
    status, cancelled = call("POST", f"/erasure-requests/{second['id']}/cancel", user="alice",
                             groups=("erasure-filers",))
    assert status == 200 and cancelled["state"] == "CANCELLED"
    assert [p["sk"].split("#", 1)[1] for p in Store(table).pending()] == [first["id"]]


def test_without_the_setting_nothing_waits(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASURE_APPROVAL", "false")
    _, filed = call("POST", "/erasure-requests", FILE, user="alice", groups=("erasure-filers",))
    assert filed["state"] == "RECEIVED" and len(Store(table).pending()) == 1
    status, refused = call("POST", f"/erasure-requests/{filed['id']}/approve", user="carol",
                           groups=("erasure-approvers",))
    assert status == 409 and "approval is not required here" in refused["message"]
