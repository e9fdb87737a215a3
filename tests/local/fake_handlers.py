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


ACTIVE = {"now": 0, "most": 0}


def overlap(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Counts invocations running at once in this process (a host must never run two)."""
    import time

    ACTIVE["now"] += 1
    ACTIVE["most"] = max(ACTIVE["most"], ACTIVE["now"])
    time.sleep(0.05)
    ACTIVE["now"] -= 1
    CALLS.append(event)
    return {"batchItemFailures": []}


def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Sleeps ETL_TEST_SLEEP_S (the host is killed meanwhile, or the heartbeat must hold the messages)."""
    import os
    import time

    print("invoked", flush=True)
    time.sleep(float(os.environ.get("ETL_TEST_SLEEP_S", "60")))
    return {"batchItemFailures": []}
