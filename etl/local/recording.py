"""A backend that provisions nothing and invents plausible ids: for infra unit tests and previews."""

from __future__ import annotations

from typing import Any

ACCOUNT = "123456789012"
REGION = "eu-west-1"


class RecordingBackend:
    def create(self, type_: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        service = type_.split(":")[1].split("/")[0]
        physical = inputs.get("name") or inputs.get("bucket") or inputs.get("layerName") or name
        state: dict[str, Any] = {"arn": f"arn:aws:{service}:{REGION}:{ACCOUNT}:{physical}"}
        if type_ == "aws:s3/bucket:Bucket":
            state = {"arn": f"arn:aws:s3:::{physical}", "bucket": physical}
        elif type_ == "aws:sqs/queue:Queue":
            state["url"] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{physical}"
            return state["url"], state, "recorded"
        elif type_ == "aws:cloudwatch/eventRule:EventRule":
            state["name"] = physical
        return str(physical), state, "recorded"

    def call(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test", "userId": "TEST", "id": ACCOUNT}
        if token == "aws:index/getRegion:getRegion":
            return {"name": REGION, "region": REGION, "id": REGION}
        raise NotImplementedError(f"provider function {token} is not mocked")
