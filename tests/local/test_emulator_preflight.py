"""The emulator answers a browser's CORS preflight for the JSON APIs (the console's Cognito sign-in) itself."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import boto3
import pytest

ORIGIN = "http://127.0.0.1:41371"


def preflight(url: str) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, method="OPTIONS", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-amz-target"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_a_sign_in_preflight_is_allowed_and_the_unsigned_call_then_reaches_cognito(emulator_endpoint: str) -> None:
    for _ in range(20):  # every time, not by luck of routing
        status, headers = preflight(emulator_endpoint + "/")
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == ORIGIN
        assert headers["Access-Control-Allow-Headers"] == "content-type,x-amz-target"
    idp = boto3.client("cognito-idp", endpoint_url=emulator_endpoint, region_name="us-east-1")
    pool = idp.create_user_pool(PoolName="p")["UserPool"]["Id"]
    client = idp.create_user_pool_client(UserPoolId=pool, ClientName="c",
                                         ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"])["UserPoolClient"]["ClientId"]
    body = json.dumps({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": client,
                       "AuthParameters": {"USERNAME": "nobody", "PASSWORD": "not-the-password"}}).encode()
    request = urllib.request.Request(emulator_endpoint + "/", data=body, method="POST", headers={
        "Origin": ORIGIN, "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth"})
    with pytest.raises(urllib.error.HTTPError) as refused:  # as the browser sees it: Cognito's own refusal
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert "UserNotFoundException" in json.loads(refused.value.read())["__type"]


def test_a_bucket_preflight_is_left_to_the_emulated_s3(emulator_endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=emulator_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="no-cors")
    status, headers = preflight(emulator_endpoint + "/no-cors/key")
    assert status != 204 and "Access-Control-Max-Age" not in headers  # moto's answer, not the emulator's
