"""Per-object progress in the state table, so `etl status` can say how far each landed object got.

Items: pk = `object#<object_id>`, sk = `status`. Every service updates the same item; updates are
plain SETs (idempotent) and never carry row data or subject ids.
"""

from __future__ import annotations

import time
from typing import Any

PK_PREFIX = "object#"
SK = "status"
RETENTION_S = 90 * 24 * 3600


def key(object_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"{PK_PREFIX}{object_id}"}, "sk": {"S": SK}}


def _attr(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, int | float):
        return {"N": str(v)}
    if v is None:
        return {"NULL": True}
    return {"S": str(v)}


def record(ddb: Any, table: str, object_id: str, stage: str, **fields: Any) -> None:
    """Set the object's stage and fields (last writer wins per field)."""
    now = time.time()
    values = {"stage": stage, "updated_at": int(now), "expires_at": int(now + RETENTION_S), **fields}
    names = {f"#{i}": k for i, k in enumerate(values)}
    expr = "SET " + ", ".join(f"#{i} = :{i}" for i in range(len(values)))
    ddb.update_item(
        TableName=table,
        Key=key(object_id),
        UpdateExpression=expr,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues={f":{i}": _attr(v) for i, v in enumerate(values.values())},
    )


def _plain(attr: dict[str, Any]) -> Any:
    (kind, v), = attr.items()
    if kind == "N":
        return int(v) if v.lstrip("-").isdigit() else float(v)
    if kind == "NULL":
        return None
    return v


def list_objects(ddb: Any, table: str) -> list[dict[str, Any]]:
    """Every object's status item (a scan: for the operator CLI, not for services)."""
    items: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="begins_with(pk, :p) AND sk = :s",
        ExpressionAttributeValues={":p": {"S": PK_PREFIX}, ":s": {"S": SK}},
    ):
        for it in page["Items"]:
            row = {k: _plain(v) for k, v in it.items()}
            row["object_id"] = row.pop("pk")[len(PK_PREFIX) :]
            row.pop("sk", None)
            items.append(row)
    return sorted(items, key=lambda r: r.get("updated_at", 0))
