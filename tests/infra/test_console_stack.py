"""The compliance console in the erasure stack: private bucket behind CloudFront, Cognito, JWT-authorised API."""

from __future__ import annotations

import json

import pytest

from contracts.datasets import load_datasets
from infra import console
from services.erasure import intake, subjects
from services.erasure.api import GROUP_RULES
from tests.infra.harness import CONSOLE_TYPES, Stack, build


@pytest.fixture(scope="module")
def erasure() -> Stack:
    return build("erasure-dev")


def test_console_routes_need_a_cognito_token_from_this_pool_and_client(erasure: Stack) -> None:
    pool = erasure.one("aws:cognito/userPool:UserPool", "console-users")
    client = erasure.one("aws:cognito/userPoolClient:UserPoolClient", "console-client")
    auth = erasure.one("aws:apigatewayv2/authorizer:Authorizer", "console-authorizer")
    api = erasure.one("aws:apigatewayv2/api:Api", "console-api")
    assert auth.inputs["authorizerType"] == "JWT" and auth.inputs["apiId"] == api.id
    assert auth.inputs["identitySources"] == ["$request.header.Authorization"]
    assert auth.inputs["jwtConfiguration"] == {
        "issuer": f"https://cognito-idp.eu-west-1.amazonaws.com/{pool.id}", "audiences": [client.id]}
    routes = [r for r in erasure.of_type("aws:apigatewayv2/route:Route") if r.inputs["apiId"] == api.id]
    assert sorted(r.inputs["routeKey"] for r in routes) == sorted(console.ROUTES)
    assert all(r.inputs["authorizationType"] == "JWT" and r.inputs["authorizerId"] == auth.id for r in routes)
    integration = erasure.one("aws:apigatewayv2/integration:Integration", "console-api-integration")
    fn = erasure.one("aws:lambda/function:Function", "erasure-api-function")
    assert integration.inputs["integrationUri"] == fn.state["arn"]  # the same function, the same rules
    perm = erasure.one("aws:lambda/permission:Permission", "console-api-invoke")
    assert perm.inputs["principal"] == "apigateway.amazonaws.com"
    assert perm.inputs["sourceArn"] == f"arn:aws:execute-api:eu-west-1:123456789012:{api.id}/*/*"


def test_users_are_admin_created_and_the_browser_client_has_no_secret(erasure: Stack) -> None:
    pool = erasure.one("aws:cognito/userPool:UserPool", "console-users")
    assert pool.inputs["adminCreateUserConfig"]["allowAdminCreateUserOnly"] is True
    assert pool.inputs["passwordPolicy"]["minimumLength"] >= 12
    assert pool.inputs["deletionProtection"] == "ACTIVE"
    client = erasure.one("aws:cognito/userPoolClient:UserPoolClient", "console-client")
    assert client.inputs["generateSecret"] is False
    assert sorted(client.inputs["explicitAuthFlows"]) == ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_PASSWORD_AUTH"]
    assert client.inputs["preventUserExistenceErrors"] == "ENABLED"
    groups = {g.inputs["name"] for g in erasure.of_type("aws:cognito/userGroup:UserGroup")}
    assert groups == set(console.GROUPS)
    assert set().union(*GROUP_RULES.values()) == groups  # every group grants something, the API knows each


def test_bucket_is_private_tls_only_and_readable_by_this_distribution_only(erasure: Stack) -> None:
    bucket = erasure.one("aws:s3/bucket:Bucket", "console")
    assert bucket.inputs["bucket"] == "etl-dev-console-123456789012"
    pab = erasure.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "console-public-access")
    assert all(pab.inputs[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                       "restrictPublicBuckets"))
    sse = erasure.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                      "console-sse")
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    cdn = erasure.one("aws:cloudfront/distribution:Distribution", "console-cdn")
    doc = json.loads(erasure.one("aws:s3/bucketPolicy:BucketPolicy", "console-policy").inputs["policy"])
    deny, allow = doc["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert allow == {"Sid": "CloudFrontReadsAssets", "Effect": "Allow",
                     "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
                     "Resource": f"{bucket.state['arn']}/*",
                     "Condition": {"StringEquals": {"AWS:SourceArn": cdn.state["arn"]}}}


def test_cloudfront_serves_assets_through_oac_and_the_api_paths_uncached(erasure: Stack) -> None:
    cdn = erasure.one("aws:cloudfront/distribution:Distribution", "console-cdn").inputs
    oac = erasure.one("aws:cloudfront/originAccessControl:OriginAccessControl", "console-oac")
    api = erasure.one("aws:apigatewayv2/api:Api", "console-api")
    origins = {o["originId"]: o for o in cdn["origins"]}
    assert origins["assets"]["domainName"] == "etl-dev-console-123456789012.s3.eu-west-1.amazonaws.com"
    assert origins["assets"]["originAccessControlId"] == oac.id
    assert oac.inputs["signingBehavior"] == "always" and oac.inputs["originAccessControlOriginType"] == "s3"
    assert origins["api"]["domainName"] == f"{api.id}.execute-api.eu-west-1.amazonaws.com"
    assert origins["api"]["customOriginConfig"]["originProtocolPolicy"] == "https-only"
    default = cdn["defaultCacheBehavior"]
    assert default["targetOriginId"] == "assets" and default["viewerProtocolPolicy"] == "redirect-to-https"
    behaviors = {b["pathPattern"]: b for b in cdn["orderedCacheBehaviors"]}
    assert set(behaviors) == set(console.API_PATH_PATTERNS)
    for b in behaviors.values():
        assert b["targetOriginId"] == "api" and b["cachePolicyId"] == console.CACHING_DISABLED
        assert b["originRequestPolicyId"] == console.ALL_VIEWER_EXCEPT_HOST  # forwards Authorization
        assert "POST" in b["allowedMethods"]
    assert cdn["defaultRootObject"] == "index.html"
    assert cdn["viewerCertificate"]["cloudfrontDefaultCertificate"] is True


def test_pages_may_load_only_their_own_code_and_talk_only_to_themselves_and_cognito(erasure: Stack) -> None:
    policy = erasure.one("aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy", "console-headers").inputs
    headers = policy["securityHeadersConfig"]
    csp = dict(d.split(" ", 1) for d in headers["contentSecurityPolicy"]["contentSecurityPolicy"].split("; "))
    assert csp["script-src"] == "'self'" and csp["default-src"] == "'none'"
    assert csp["connect-src"] == "'self' https://cognito-idp.eu-west-1.amazonaws.com"
    assert csp["frame-ancestors"] == "'none'"
    assert headers["referrerPolicy"]["referrerPolicy"] == "no-referrer"
    assert headers["frameOptions"]["frameOption"] == "DENY"
    assert headers["strictTransportSecurity"]["accessControlMaxAgeSec"] >= 31536000


def test_every_asset_and_the_config_are_uploaded(erasure: Stack) -> None:
    objects = {o.inputs["key"]: o.inputs for o in erasure.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
    expected = {p.relative_to(console.ASSETS).as_posix() for p in console.asset_files()}
    assert "index.html" in expected and "app.js" in expected
    assert set(objects) == expected | {"config.json", "datasets.json"}
    assert objects["app.js"]["contentType"] == "text/javascript; charset=utf-8"
    assert objects["index.html"]["contentType"] == "text/html; charset=utf-8"
    config = json.loads(objects["config.json"]["content"])
    pool = erasure.one("aws:cognito/userPool:UserPool", "console-users")
    client = erasure.one("aws:cognito/userPoolClient:UserPoolClient", "console-client")
    assert config == {"env": "dev", "region": "eu-west-1", "userPoolId": pool.id, "clientId": client.id,
                      "cognitoEndpoint": "https://cognito-idp.eu-west-1.amazonaws.com/", "apiBase": "",
                      "deadlineDays": 30, "riskDays": 7, "approval": False, "groups": sorted(console.GROUPS)}
    datasets = json.loads(objects["datasets.json"]["content"])
    assert [d["name"] for d in datasets["datasets"]] == intake.subject_datasets(load_datasets())
    assert datasets["datasets"][0]["subjectColumns"] == [{"name": "customer_id", "type": "int64"}]


def test_form_limits_are_the_api_s() -> None:
    fields = intake.RequestBody.model_fields
    assert {
        "maxSubjects": intake.MAX_SUBJECTS, "maxIdChars": subjects.MAX_ID_CHARS,
        "maxReason": fields["reason"].metadata[1].max_length, "maxTicket": fields["ticket"].metadata[0].max_length,
        "maxRequestedBy": fields["requested_by"].metadata[1].max_length} == console.LIMITS


def test_outputs_and_opt_out(erasure: Stack) -> None:
    out = erasure.run.outputs
    cdn = erasure.one("aws:cloudfront/distribution:Distribution", "console-cdn")
    assert out["consoleBucket"] == "etl-dev-console-123456789012"
    assert out["consoleUserPoolId"] == erasure.one("aws:cognito/userPool:UserPool", "console-users").id
    assert out["consoleDistributionId"] == cdn.id
    without = build("erasure-dev", {"console": False})
    assert not {r.type for r in without.resources} & CONSOLE_TYPES
    assert not [k for k in without.run.outputs if k.startswith("console")]


def test_four_eyes_approval_is_per_environment(erasure: Stack) -> None:
    fn = "erasure-api-function"
    assert erasure.one("aws:lambda/function:Function", fn).inputs["environment"]["variables"][
        "ERASURE_APPROVAL"] == "false"
    strict = build("erasure-dev", {"erasureApproval": True})
    assert strict.one("aws:lambda/function:Function", fn).inputs["environment"]["variables"][
        "ERASURE_APPROVAL"] == "true"
    objects = {o.inputs["key"]: o.inputs for o in strict.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
    assert json.loads(objects["config.json"]["content"])["approval"] is True
    routes = {r.inputs["routeKey"] for r in strict.of_type("aws:apigatewayv2/route:Route")}
    assert "POST /erasure-requests/{id}/approve" in routes
