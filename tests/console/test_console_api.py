"""The console's API on the local platform: Cognito tokens checked like API Gateway's JWT authorizer does,
groups enforced by the API function, value-free refusals, and an earlier deadline."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest

from etl.local.console import ConsoleInfo
from etl.local.platform import PlatformState

pytestmark = pytest.mark.e2e
PASSWORD = "Test-password-1234"


def _idp(state: PlatformState) -> Any:
    return boto3.client("cognito-idp", endpoint_url=state.endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _token(state: PlatformState, username: str, groups: list[str]) -> str:
    """A confirmed user in exactly these groups, signed in as the browser does (USER_PASSWORD_AUTH)."""
    idp, erasure = _idp(state), state.stacks["erasure-local"].outputs
    pool = erasure["consoleUserPoolId"]
    idp.admin_create_user(UserPoolId=pool, Username=username, MessageAction="SUPPRESS", TemporaryPassword=PASSWORD)
    idp.admin_set_user_password(UserPoolId=pool, Username=username, Password=PASSWORD, Permanent=True)
    for g in groups:
        idp.admin_add_user_to_group(UserPoolId=pool, Username=username, GroupName=g)
    auth = idp.initiate_auth(ClientId=erasure["consoleClientId"], AuthFlow="USER_PASSWORD_AUTH",
                             AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD})
    return str(auth["AuthenticationResult"]["AccessToken"])


def _call(site: ConsoleInfo, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(site.url.rstrip("/") + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _forge(token: str, **claims: Any) -> str:
    """The same token with changed claims and the original signature (which no longer matches)."""
    head, payload, sig = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


def test_tokens_are_checked_like_api_gateway_does(local: tuple[PlatformState, ConsoleInfo]) -> None:
    state, site = local
    token = _token(state, "auditor-a", ["erasure-readers"])
    assert _call(site, "GET", "/erasure-requests", token)[0] == 200
    for bad in (None, "not-a-jwt", _forge(token, **{"cognito:groups": ["erasure-filers"]}),
                _forge(token, exp=int(time.time()) + 86400)):
        status, body = _call(site, "GET", "/erasure-requests", bad)
        assert (status, body) == (401, {"message": "Unauthorized"})


def test_groups_decide_what_a_console_user_may_do(local: tuple[PlatformState, ConsoleInfo]) -> None:
    state, site = local
    reader = _token(state, "auditor-b", ["erasure-readers"])
    filer = _token(state, "officer-b", ["erasure-filers"])
    nobody = _token(state, "visitor-b", [])
    body = {"subject_ids": ["987654321"], "reason": "GDPR art. 17", "ticket": "T-GROUPS"}
    status, refused = _call(site, "POST", "/erasure-requests", reader, body)
    assert status == 403 and "erasure-filers" in refused["message"] and "987654321" not in json.dumps(refused)
    status, filed = _call(site, "POST", "/erasure-requests", filer, body)
    assert status == 202
    rid = filed["id"]
    status, got = _call(site, "GET", f"/erasure-requests/{rid}", reader)
    assert status == 200 and got["caller"] == "cognito:officer-b" and got["requested_by"] == "cognito:officer-b"
    assert _call(site, "GET", f"/erasure-requests/{rid}", nobody)[0] == 403
    assert _call(site, "POST", f"/erasure-requests/{rid}/cancel", reader)[0] == 403
    status, cert = _call(site, "GET", f"/erasure-requests/{rid}/certificate", filer)
    assert status == 403 and "erasure-readers" in cert["message"]
    status, missing = _call(site, "GET", f"/erasure-requests/{rid}/certificate", reader)
    assert status == 404 and "RECEIVED" in missing["message"]  # allowed, but not issued yet
    assert _call(site, "POST", f"/erasure-requests/{rid}/cancel", filer)[0] == 200


def test_a_request_may_ask_for_an_earlier_deadline_never_a_later_one(local: tuple[PlatformState, ConsoleInfo]) -> None:
    state, site = local
    filer = _token(state, "officer-c", ["erasure-filers", "erasure-readers"])
    base = {"subject_ids": ["123450001"], "reason": "GDPR art. 17"}
    soon = time.time() + 5 * 86400
    status, filed = _call(site, "POST", "/erasure-requests", filer, {**base, "deadline": soon})
    assert status == 202 and filed["deadline"] == pytest.approx(soon)
    for when, why in ((time.time() + 40 * 86400, "within 30 days"), (time.time() - 60, "in the future")):
        status, refused = _call(site, "POST", "/erasure-requests", filer,
                                {**base, "deadline": when, "client_request_id": f"late-{when}"})
        assert status == 400 and any(why in e for e in refused["errors"]), refused
