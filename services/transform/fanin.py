"""Fan-in of chunks with a conditional counter, not a scan: the last chunk announces the object.

Each chunk PUTs its own counts item (idempotent) and ADDs its index to a string set on the object's
status item (idempotent too: a set ignores a second ADD). The invocation that sees the set complete
sums the chunk items with one Query and publishes ObjectTransformed; `announced` records that it did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from contracts import progress

COUNTS = ("rows_in", "rows_good", "rows_quarantined", "partitions")


@dataclass(frozen=True)
class Totals:
    chunks: int
    rows_in: int
    rows_good: int
    rows_quarantined: int
    partitions: int


def chunk_key(object_id: str, index: int) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"{progress.PK_PREFIX}{object_id}"}, "sk": {"S": f"chunk#{index:05d}"}}


def record_chunk(ddb: Any, table: str, object_id: str, index: int, count: int, counts: dict[str, int]) -> Totals | None:
    """Record one finished chunk; return the object's totals when every chunk is done and not yet announced."""
    expires = int(time.time() + progress.RETENTION_S)
    ddb.put_item(
        TableName=table,
        Item={**chunk_key(object_id, index), **{k: {"N": str(counts[k])} for k in COUNTS},
              "expires_at": {"N": str(expires)}},
    )
    item = ddb.update_item(
        TableName=table,
        Key=progress.key(object_id),
        UpdateExpression="ADD chunks_done :i SET chunk_count = :n, #s = if_not_exists(#s, :stage)",
        ExpressionAttributeNames={"#s": "stage"},
        ExpressionAttributeValues={
            ":i": {"SS": [str(index)]},
            ":n": {"N": str(count)},
            ":stage": {"S": "transforming"},
        },
        ReturnValues="ALL_NEW",
    )["Attributes"]
    if len(item["chunks_done"]["SS"]) < count or item.get("announced", {}).get("BOOL"):
        return None
    return _totals(ddb, table, object_id, count)


def _totals(ddb: Any, table: str, object_id: str, count: int) -> Totals:
    sums = dict.fromkeys(COUNTS, 0)
    pages = ddb.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :c)",
        ExpressionAttributeValues={":pk": {"S": f"{progress.PK_PREFIX}{object_id}"}, ":c": {"S": "chunk#"}},
        ConsistentRead=True,
    )
    for page in pages:
        for it in page["Items"]:
            for k in COUNTS:
                sums[k] += int(it[k]["N"])
    return Totals(chunks=count, **sums)


def mark_announced(ddb: Any, table: str, object_id: str) -> None:
    ddb.update_item(TableName=table, Key=progress.key(object_id), UpdateExpression="SET announced = :t",
                    ExpressionAttributeValues={":t": {"BOOL": True}})
