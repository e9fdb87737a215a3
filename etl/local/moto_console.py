"""Provision the compliance console's resources (infra/console.py) in moto, for the local platform.

Cognito (user pool, app client, groups) and the HTTP API's JWT authorizer are created in the
emulator: moto signs real access tokens with a published JWKS, which the loopback API checks
(`etl.local.jwt_authorizer`). The console's assets and config are put into the console bucket.
CloudFront has no local counterpart: its distribution, origin access control and response-headers
policy are recorded, and `etl.local.console` serves the bucket and routes the API paths on loopback.

Register in MotoBackend: `self._handlers.update(moto_console.handlers(self.region, self.account))`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts import aws

Result = tuple[str, dict[str, Any], str]
CREATED = "created"
SERVED = "recorded; served on 127.0.0.1 by etl.local.console"


def _source(i: dict[str, Any]) -> bytes:
    """An object's bytes from `content`, `contentBase64` or a file asset `source`."""
    if i.get("content") is not None:
        return str(i["content"]).encode()
    if i.get("contentBase64") is not None:
        return base64.b64decode(i["contentBase64"])
    source = i.get("source")
    path = getattr(source, "path", None) or (source.get("path") if isinstance(source, dict) else None)
    if not path:
        raise ValueError(f"bucket object {i.get('key')!r}: only content, contentBase64 or a FileAsset source "
                         "can be provisioned locally")
    return Path(path).read_bytes()


def handlers(region: str, account: str) -> dict[str, Callable[[str, dict[str, Any]], Result]]:
    """Handlers by Pulumi type token, each returning (physical id, output state, local effect)."""

    def user_pool(name: str, i: dict[str, Any]) -> Result:
        kw: dict[str, Any] = {"PoolName": i["name"]}
        admin = i.get("adminCreateUserConfig") or {}
        if admin:
            kw["AdminCreateUserConfig"] = {"AllowAdminCreateUserOnly": bool(admin.get("allowAdminCreateUserOnly"))}
        policy = i.get("passwordPolicy") or {}
        if policy:
            kw["Policies"] = {"PasswordPolicy": {
                "MinimumLength": int(policy.get("minimumLength") or 8),
                "RequireLowercase": bool(policy.get("requireLowercase")),
                "RequireUppercase": bool(policy.get("requireUppercase")),
                "RequireNumbers": bool(policy.get("requireNumbers")),
                "RequireSymbols": bool(policy.get("requireSymbols")),
            }}
        if i.get("mfaConfiguration"):
            kw["MfaConfiguration"] = i["mfaConfiguration"]
        pool = aws.client("cognito-idp").create_user_pool(**kw)["UserPool"]
        state = {"id": pool["Id"], "arn": pool["Arn"], "name": i["name"],
                 "endpoint": f"cognito-idp.{region}.amazonaws.com/{pool['Id']}"}
        return pool["Id"], state, CREATED + " (MFA and deletion protection not enforced locally)"

    def user_pool_client(name: str, i: dict[str, Any]) -> Result:
        kw: dict[str, Any] = {"UserPoolId": i["userPoolId"], "ClientName": i["name"],
                              "GenerateSecret": bool(i.get("generateSecret"))}
        if i.get("explicitAuthFlows"):
            kw["ExplicitAuthFlows"] = list(i["explicitAuthFlows"])
        client = aws.client("cognito-idp").create_user_pool_client(**kw)["UserPoolClient"]
        return client["ClientId"], {"id": client["ClientId"], "name": i["name"]}, CREATED

    def user_group(name: str, i: dict[str, Any]) -> Result:
        aws.client("cognito-idp").create_group(GroupName=i["name"], UserPoolId=i["userPoolId"],
                                               Description=i.get("description") or "")
        return f"{i['userPoolId']}/{i['name']}", {"name": i["name"]}, CREATED

    def authorizer(name: str, i: dict[str, Any]) -> Result:
        jwt = i.get("jwtConfiguration") or {}
        resp = aws.client("apigatewayv2").create_authorizer(
            ApiId=i["apiId"], AuthorizerType=i["authorizerType"], Name=i["name"],
            IdentitySource=list(i.get("identitySources") or []),
            JwtConfiguration={"Audience": list(jwt.get("audiences") or []), "Issuer": jwt.get("issuer") or ""})
        return resp["AuthorizerId"], {"id": resp["AuthorizerId"]}, "created; checked on 127.0.0.1 (signature, " \
                                                                    "issuer, audience, expiry)"

    def bucket_object(name: str, i: dict[str, Any]) -> Result:
        kw: dict[str, Any] = {"Bucket": i["bucket"], "Key": i["key"], "Body": _source(i)}
        if i.get("contentType"):
            kw["ContentType"] = i["contentType"]
        if i.get("cacheControl"):
            kw["CacheControl"] = i["cacheControl"]
        etag = aws.client("s3").put_object(**kw)["ETag"].strip('"')
        return f"{i['bucket']}/{i['key']}", {"etag": etag, "key": i["key"], "bucket": i["bucket"]}, CREATED

    def origin_access_control(name: str, i: dict[str, Any]) -> Result:
        return name, {"id": name, "etag": ""}, SERVED

    def response_headers_policy(name: str, i: dict[str, Any]) -> Result:
        return name, {"id": name, "etag": ""}, SERVED

    def distribution(name: str, i: dict[str, Any]) -> Result:
        arn = f"arn:aws:cloudfront::{account}:distribution/{name}"
        return name, {"id": name, "arn": arn, "domainName": "127.0.0.1", "hostedZoneId": "", "status": "Deployed"}, \
            SERVED

    return {
        "aws:cognito/userPool:UserPool": user_pool,
        "aws:cognito/userPoolClient:UserPoolClient": user_pool_client,
        "aws:cognito/userGroup:UserGroup": user_group,
        "aws:apigatewayv2/authorizer:Authorizer": authorizer,
        "aws:s3/bucketObjectv2:BucketObjectv2": bucket_object,
        "aws:cloudfront/originAccessControl:OriginAccessControl": origin_access_control,
        "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy": response_headers_policy,
        "aws:cloudfront/distribution:Distribution": distribution,
    }
