"""Handlers the function-host tests load by dotted name, as the host loads real ones."""

from __future__ import annotations

from typing import Any

CALLS: list[dict[str, Any]] = []


def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    CALLS.append(event)
    return {"batchItemFailures": []}


def fail_second(event: dict[str, Any], context: Any) -> dict[str, Any]:
    CALLS.append(event)
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"][1:2]]}


def explode(event: dict[str, Any], context: Any) -> dict[str, Any]:
    CALLS.append(event)
    raise RuntimeError("boom")
