"""The compliance console: a static web app on S3 behind CloudFront, Cognito sign-in, a JWT-authorised API.

Part of the erasure stack (`infra/erasure.py` builds it unless `etl:console: false`); every piece is
billed per request, so an idle console costs $0:
- Cognito user pool (admin-created users only) + public app client (USER_PASSWORD_AUTH, no secret) +
  the groups that map to what a user may do (GROUPS; enforced by the API function);
- a second HTTP API over the same `erasure-api` function whose routes need a Cognito access token
  (JWT authorizer): the browser never holds AWS keys and signs nothing;
- a private bucket with the static assets and `config.json` (pool, client, region), read by CloudFront
  through an origin access control; CloudFront also routes the API paths to the HTTP API, so the page
  and its API share one origin (no CORS, a strict Content-Security-Policy).
Why these and not an identity pool + SigV4: docs/design/console.md.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path

import pulumi
import pulumi_aws as aws

from contracts import naming
from contracts.datasets import load_datasets
from infra.components.secure_bucket import tls_only_policy
from infra.erasure_routes import ROUTES

ASSETS = Path(__file__).resolve().parents[1] / "console"
#: Cognito group → what its members may do through the console API (services/erasure/api.py enforces it)
GROUPS = {
    "erasure-filers": "File erasure requests, start runs, cancel requests before erasing starts",
    "erasure-approvers": "Approve requests someone else filed (four-eyes, when etl:erasureApproval is true)",
    "erasure-readers": "Read erasure requests and download their certificates",
}
#: CloudFront paths served by the HTTP API (everything else is a static asset)
API_PATH_PATTERNS = ("/erasure-requests*", "/erasure-runs")
#: AWS-managed CloudFront policies (ids are fixed by AWS): nothing to create or pay for
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
ASSET_SUFFIXES = {".html", ".js", ".css", ".svg", ".ico"}
#: the API's intake rules the form checks before sending (services/erasure/intake.py; a test keeps them equal)
LIMITS = {"maxSubjects": 1000, "maxIdChars": 256, "maxReason": 2000, "maxTicket": 200, "maxRequestedBy": 200}


def datasets_document() -> dict:
    """What the form offers: datasets whose contracts declare subject columns, with those columns' types."""
    found = []
    for name, d in sorted(load_datasets().items()):
        if d.subject_columns:
            found.append({"name": name, "description": d.description,
                          "subjectColumns": [{"name": c, "type": d.column(c).type} for c in d.subject_columns]})
    return {"datasets": found, "limits": LIMITS}


def content_security_policy(cognito_endpoint: str) -> str:
    """Scripts and styles from the console's own origin only; network to itself (API) and Cognito only."""
    return "; ".join([
        "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
        f"connect-src 'self' {cognito_endpoint.rstrip('/')}", "base-uri 'none'", "form-action 'none'",
        "frame-ancestors 'none'",
    ])


def asset_files() -> list[Path]:
    """The console's static files (the page, its modules and styles), in a stable order."""
    return sorted(p for p in ASSETS.rglob("*") if p.is_file() and p.suffix in ASSET_SUFFIXES)


def content_type(path: Path) -> str:
    if path.suffix == ".js":
        return "text/javascript; charset=utf-8"
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") else kind


class Console(pulumi.ComponentResource):
    """Everything the console needs, given the erasure stack's API function."""

    def __init__(self, env: str, account_id: str, region: str, api_fn: aws.lambda_.Function,
                 deadline_days: int, risk_days: int, approval: bool,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("etl:service:Console", naming.name(env, "console"), None, opts)
        self.env, self.region = env, region
        self.deadline_days, self.risk_days, self.approval = deadline_days, risk_days, approval
        child = pulumi.ResourceOptions(parent=self)
        self.cognito_endpoint = f"https://cognito-idp.{region}.amazonaws.com/"

        self.pool = aws.cognito.UserPool(
            "console-users", name=naming.name(env, "console-users"),
            admin_create_user_config=aws.cognito.UserPoolAdminCreateUserConfigArgs(
                allow_admin_create_user_only=True),
            password_policy=aws.cognito.UserPoolPasswordPolicyArgs(
                minimum_length=12, require_lowercase=True, require_uppercase=True, require_numbers=True,
                require_symbols=False, temporary_password_validity_days=3),
            mfa_configuration="OPTIONAL",
            software_token_mfa_configuration=aws.cognito.UserPoolSoftwareTokenMfaConfigurationArgs(enabled=True),
            account_recovery_setting=aws.cognito.UserPoolAccountRecoverySettingArgs(recovery_mechanisms=[
                aws.cognito.UserPoolAccountRecoverySettingRecoveryMechanismArgs(name="admin_only", priority=1)]),
            deletion_protection="ACTIVE", opts=child)
        self.client = aws.cognito.UserPoolClient(
            "console-client", name=naming.name(env, "console"), user_pool_id=self.pool.id, generate_secret=False,
            explicit_auth_flows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            prevent_user_existence_errors="ENABLED", enable_token_revocation=True,
            access_token_validity=60, id_token_validity=60, refresh_token_validity=12,
            token_validity_units=aws.cognito.UserPoolClientTokenValidityUnitsArgs(
                access_token="minutes", id_token="minutes", refresh_token="hours"),
            opts=child)
        for group, description in GROUPS.items():
            aws.cognito.UserGroup(f"console-group-{group}", name=group, user_pool_id=self.pool.id,
                                  description=description, opts=child)
        self.issuer = self.pool.id.apply(lambda i: f"{self.cognito_endpoint.rstrip('/')}/{i}")
        self.api = self._api(api_fn, account_id)
        self.bucket = self._bucket(account_id)
        self.distribution = self._distribution()
        self._bucket_policy()
        self._assets()
        self.register_outputs({})

    # -- API ----------------------------------------------------------------------------------------
    def _api(self, api_fn: aws.lambda_.Function, account_id: str) -> aws.apigatewayv2.Api:
        child = pulumi.ResourceOptions(parent=self)
        api = aws.apigatewayv2.Api("console-api", name=naming.name(self.env, "console-api"), protocol_type="HTTP",
                                   description="Erasure requests for the compliance console (Cognito JWT)",
                                   opts=child)
        authorizer = aws.apigatewayv2.Authorizer(
            "console-authorizer", api_id=api.id, name="cognito", authorizer_type="JWT",
            identity_sources=["$request.header.Authorization"],
            jwt_configuration=aws.apigatewayv2.AuthorizerJwtConfigurationArgs(
                issuer=self.issuer, audiences=[self.client.id]), opts=child)
        integration = aws.apigatewayv2.Integration(
            "console-api-integration", api_id=api.id, integration_type="AWS_PROXY", integration_method="POST",
            integration_uri=api_fn.arn, payload_format_version="2.0", timeout_milliseconds=29000, opts=child)
        for n, key in enumerate(ROUTES):
            aws.apigatewayv2.Route(f"console-route-{n}", api_id=api.id, route_key=key, authorization_type="JWT",
                                   authorizer_id=authorizer.id,
                                   target=integration.id.apply(lambda i: f"integrations/{i}"), opts=child)
        aws.apigatewayv2.Stage("console-api-stage", api_id=api.id, name="$default", auto_deploy=True,
                               default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                                   throttling_burst_limit=20, throttling_rate_limit=10), opts=child)
        aws.lambda_.Permission("console-api-invoke", action="lambda:InvokeFunction", function=api_fn.name,
                               principal="apigateway.amazonaws.com",
                               source_arn=api.id.apply(
                                   lambda i: f"arn:aws:execute-api:{self.region}:{account_id}:{i}/*/*"),
                               opts=child)
        return api

    # -- static hosting -------------------------------------------------------------------------------
    def _bucket(self, account_id: str) -> aws.s3.Bucket:
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket("console", bucket=naming.bucket_name(self.env, "console", account_id),
                               force_destroy=True, opts=child)
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            "console-public-access", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            "console-sse", bucket=bucket.id, rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"), bucket_key_enabled=True)], opts=child)
        return bucket

    def _distribution(self) -> aws.cloudfront.Distribution:
        child = pulumi.ResourceOptions(parent=self)
        oac = aws.cloudfront.OriginAccessControl(
            "console-oac", name=naming.name(self.env, "console"), origin_access_control_origin_type="s3",
            signing_behavior="always", signing_protocol="sigv4", description="CloudFront reads the console bucket",
            opts=child)
        headers = aws.cloudfront.ResponseHeadersPolicy(
            "console-headers", name=naming.name(self.env, "console-headers"),
            security_headers_config=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigArgs(
                content_security_policy=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigContentSecurityPolicyArgs(
                    content_security_policy=content_security_policy(self.cognito_endpoint), override=True),
                content_type_options=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigContentTypeOptionsArgs(
                    override=True),
                frame_options=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigFrameOptionsArgs(
                    frame_option="DENY", override=True),
                referrer_policy=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigReferrerPolicyArgs(
                    referrer_policy="no-referrer", override=True),
                strict_transport_security=aws.cloudfront.
                ResponseHeadersPolicySecurityHeadersConfigStrictTransportSecurityArgs(
                    access_control_max_age_sec=31536000, include_subdomains=True, override=True)),
            opts=child)
        api_domain = self.api.id.apply(lambda i: f"{i}.execute-api.{self.region}.amazonaws.com")
        api_behaviors = [aws.cloudfront.DistributionOrderedCacheBehaviorArgs(
            path_pattern=pattern, target_origin_id="api", viewer_protocol_policy="https-only",
            allowed_methods=["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"],
            cached_methods=["GET", "HEAD"], cache_policy_id=CACHING_DISABLED,
            origin_request_policy_id=ALL_VIEWER_EXCEPT_HOST, response_headers_policy_id=headers.id, compress=True,
        ) for pattern in API_PATH_PATTERNS]
        return aws.cloudfront.Distribution(
            "console-cdn", enabled=True, comment=f"{naming.prefix(self.env)} compliance console",
            default_root_object="index.html", price_class="PriceClass_100", http_version="http2and3",
            is_ipv6_enabled=True,
            origins=[
                aws.cloudfront.DistributionOriginArgs(
                    origin_id="assets",
                    domain_name=self.bucket.bucket.apply(lambda b: f"{b}.s3.{self.region}.amazonaws.com"),
                    origin_access_control_id=oac.id),
                aws.cloudfront.DistributionOriginArgs(
                    origin_id="api", domain_name=api_domain,
                    custom_origin_config=aws.cloudfront.DistributionOriginCustomOriginConfigArgs(
                        http_port=80, https_port=443, origin_protocol_policy="https-only",
                        origin_ssl_protocols=["TLSv1.2"])),
            ],
            default_cache_behavior=aws.cloudfront.DistributionDefaultCacheBehaviorArgs(
                target_origin_id="assets", viewer_protocol_policy="redirect-to-https",
                allowed_methods=["GET", "HEAD"], cached_methods=["GET", "HEAD"], cache_policy_id=CACHING_OPTIMIZED,
                response_headers_policy_id=headers.id, compress=True),
            ordered_cache_behaviors=api_behaviors,
            restrictions=aws.cloudfront.DistributionRestrictionsArgs(
                geo_restriction=aws.cloudfront.DistributionRestrictionsGeoRestrictionArgs(restriction_type="none")),
            viewer_certificate=aws.cloudfront.DistributionViewerCertificateArgs(cloudfront_default_certificate=True),
            opts=child)

    def _bucket_policy(self) -> None:
        def render(args: list[str]) -> str:
            bucket_arn, distribution_arn = args
            doc = json.loads(tls_only_policy(bucket_arn))
            doc["Statement"].append({
                "Sid": "CloudFrontReadsAssets", "Effect": "Allow",
                "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
                "Resource": f"{bucket_arn}/*", "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}}})
            return json.dumps(doc)

        aws.s3.BucketPolicy("console-policy", bucket=self.bucket.id,
                            policy=pulumi.Output.all(self.bucket.arn, self.distribution.arn).apply(render),
                            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]))

    def _assets(self) -> None:
        child = pulumi.ResourceOptions(parent=self)
        for path in asset_files():
            key = path.relative_to(ASSETS).as_posix()
            aws.s3.BucketObjectv2(
                f"console-asset-{key}", bucket=self.bucket.id, key=key, source=pulumi.FileAsset(str(path)),
                content_type=content_type(path), cache_control="no-cache", opts=child)
        config = pulumi.Output.all(self.pool.id, self.client.id).apply(lambda a: json.dumps({
            "env": self.env, "region": self.region, "userPoolId": a[0], "clientId": a[1],
            "cognitoEndpoint": self.cognito_endpoint, "apiBase": "",
            "deadlineDays": self.deadline_days, "riskDays": self.risk_days, "approval": self.approval,
            "groups": sorted(GROUPS)}, indent=2))
        aws.s3.BucketObjectv2("console-config", bucket=self.bucket.id, key="config.json", content=config,
                              content_type="application/json", cache_control="no-cache", opts=child)
        aws.s3.BucketObjectv2("console-datasets", bucket=self.bucket.id, key="datasets.json",
                              content=json.dumps(datasets_document(), indent=2), content_type="application/json",
                              cache_control="no-cache", opts=child)

    def outputs(self) -> dict[str, pulumi.Input]:
        return {
            "consoleUrl": self.distribution.domain_name.apply(lambda d: f"https://{d}/"),
            "consoleBucket": self.bucket.bucket,
            "consoleApiUrl": self.api.api_endpoint,
            "consoleApiId": self.api.id,
            "consoleUserPoolId": self.pool.id,
            "consoleClientId": self.client.id,
            "consoleDistributionId": self.distribution.id,
        }
