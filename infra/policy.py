"""IAM policy documents built as JSON from resolved ARNs (least privilege, no `*` actions).

The one `*` resource is X-Ray's: its write actions have no resource-level permissions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi


def statement(actions: Sequence[str], resources: Sequence[pulumi.Input[str]], sid: str | None = None) -> dict:
    st: dict[str, Any] = {"Effect": "Allow", "Action": sorted(actions), "Resource": list(resources)}
    if sid:
        st["Sid"] = sid
    return st


#: what Lambda's active tracing needs to send segments; AWS accepts only Resource "*" for these two actions
XRAY_WRITE_ACTIONS = ("xray:PutTelemetryRecords", "xray:PutTraceSegments")


def xray_write() -> dict:
    """Send trace segments (active tracing): the only statement with Resource "*" (X-Ray has no resource ARNs)."""
    return statement(XRAY_WRITE_ACTIONS, ["*"], "XRayTraces")


def document(statements: Sequence[dict]) -> pulumi.Output[str]:
    """Resolve every Output inside the statements and render one policy document."""
    return pulumi.Output.from_input(list(statements)).apply(
        lambda sts: json.dumps({"Version": "2012-10-17", "Statement": sts}, sort_keys=True)
    )


def assume_role(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def objects(bucket_arn: pulumi.Input[str], prefix: str = "") -> pulumi.Output[str]:
    return pulumi.Output.concat(bucket_arn, "/", prefix, "*")


def put_events(bus_arn: pulumi.Input[str], *types: type, sid: str = "Publish") -> dict:
    """PutEvents on the platform bus for exactly these contract events (`contracts.events` classes).

    The condition names each event's source and detail-type, so a function cannot impersonate
    another service — above all, nobody but the erasure intake path can emit `ErasureRequested`,
    the one event whose detail carries subject ids. Every platform service has one source, so the
    two lists together allow exactly the given pairs (hence one source per call).
    """
    sources = {t.SOURCE for t in types}  # type: ignore[attr-defined]
    if len(sources) != 1:
        raise ValueError(f"put_events takes the events of one source (one service), got {sorted(sources)}")
    st = statement(["events:PutEvents"], [bus_arn], sid)
    st["Condition"] = {"StringEquals": {
        "events:source": sorted(sources),
        "events:detail-type": sorted({t.DETAIL_TYPE for t in types}),  # type: ignore[attr-defined]
    }}
    return st
