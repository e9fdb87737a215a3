"""Provision API Gateway v2 (HTTP API) resources of the program in moto, for the local platform.

The API, its integrations, routes and stage are created in the emulator (so the program gets real
ids and the local HTTP server can discover routes from the emulator, like a client of AWS would);
requests are served on loopback by `etl.local.http_api`, which calls the integrated function's
handler in-process. IAM authorisation is recorded but not enforced locally (moto does not sign).

Register in MotoBackend: `self._handlers.update(moto_apigw.handlers(self.region, self.account))`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts import aws

Result = tuple[str, dict[str, Any], str]
SERVED = "created; served on 127.0.0.1 by etl.local.http_api"
ROUTE_EFFECT = "created; served on 127.0.0.1, IAM authorisation not enforced locally"


def _int(v: Any) -> int:
    return int(float(v))


def handlers(region: str, account: str) -> dict[str, Callable[[str, dict[str, Any]], Result]]:
    """Handlers by Pulumi type token, each returning (physical id, output state, local effect)."""

    def api(name: str, i: dict[str, Any]) -> Result:
        kw: dict[str, Any] = {"Name": i["name"], "ProtocolType": i.get("protocolType") or "HTTP"}
        if i.get("description"):
            kw["Description"] = i["description"]
        resp = aws.client("apigatewayv2").create_api(**kw)
        api_id = resp["ApiId"]
        state = {
            "id": api_id,
            "name": i["name"],
            "apiEndpoint": resp.get("ApiEndpoint", ""),
            "executionArn": f"arn:aws:execute-api:{region}:{account}:{api_id}",
            "arn": f"arn:aws:apigateway:{region}::/apis/{api_id}",
        }
        return api_id, state, SERVED

    def integration(name: str, i: dict[str, Any]) -> Result:
        kw: dict[str, Any] = {"ApiId": i["apiId"], "IntegrationType": i["integrationType"]}
        for src, dst in (("integrationUri", "IntegrationUri"), ("integrationMethod", "IntegrationMethod"),
                         ("payloadFormatVersion", "PayloadFormatVersion")):
            if i.get(src):
                kw[dst] = i[src]
        if i.get("timeoutMilliseconds"):
            kw["TimeoutInMillis"] = _int(i["timeoutMilliseconds"])
        integration_id = aws.client("apigatewayv2").create_integration(**kw)["IntegrationId"]
        return integration_id, {"id": integration_id}, SERVED

    def route(name: str, i: dict[str, Any]) -> Result:
        kw: dict[str, Any] = {"ApiId": i["apiId"], "RouteKey": i["routeKey"]}
        if i.get("target"):
            kw["Target"] = i["target"]
        if i.get("authorizationType"):
            kw["AuthorizationType"] = i["authorizationType"]
        if i.get("authorizerId"):
            kw["AuthorizerId"] = i["authorizerId"]
        route_id = aws.client("apigatewayv2").create_route(**kw)["RouteId"]
        return route_id, {"id": route_id}, ROUTE_EFFECT

    def stage(name: str, i: dict[str, Any]) -> Result:
        aws.client("apigatewayv2").create_stage(ApiId=i["apiId"], StageName=i["name"],
                                                AutoDeploy=bool(i.get("autoDeploy")))
        settings = i.get("defaultRouteSettings") or {}
        effect = SERVED + (", throttling not enforced locally" if settings else "")
        return f"{i['apiId']}/{i['name']}", {"id": i["name"], "invokeUrl": ""}, effect

    return {
        "aws:apigatewayv2/api:Api": api,
        "aws:apigatewayv2/integration:Integration": integration,
        "aws:apigatewayv2/route:Route": route,
        "aws:apigatewayv2/stage:Stage": stage,
    }
