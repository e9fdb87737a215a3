"""Compaction's own items in the state table (pk/sk, TTL on `expires_at`): leases and dirty markers.

* lease `compact#lease#<dataset>#<partition path>` / `lease`: at most one compaction per
  partition at a time. Taken with a conditional put (absent or expired), released with a
  conditional delete (still ours). A crashed holder's lease simply expires: its deadline plus a
  margin, so a lease never outlives the invocation that holds it by more than the margin.
* marker `compact#dirty#<dataset>` / `<partition path>`: files were added since the partition was
  last left with at most one small file. The schedule sweeps markers that stayed quiet; a marker
  is cleared only if no file was added after the compaction that cleared it started.
Items hold partition values and timestamps only: no row data, no subject ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from contracts.commits import PartitionRef

LEASE_SK = "lease"
MARKER_TTL_SECONDS = 35 * 86400


def lease_pk(dataset: str, path: str) -> str:
    return f"compact#lease#{dataset}#{path}"


def marker_pk(dataset: str) -> str:
    return f"compact#dirty#{dataset}"


@dataclass(frozen=True)
class Marker:
    ref: PartitionRef
    path: str
    last_added: float


class CompactState(Protocol):
    """What compaction keeps besides the commit manifest (DynamoDB on AWS, a dict in unit tests)."""

    def acquire(self, dataset: str, path: str, holder: str, until: float, now: float) -> bool: ...
    def release(self, dataset: str, path: str, holder: str) -> None: ...
    def mark(self, ref: PartitionRef, path: str, now: float) -> None: ...
    def markers(self, dataset: str) -> list[Marker]: ...
    def clear(self, marker: Marker) -> bool: ...


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoCompactState:
    """Leases and markers in the platform's state table."""

    def __init__(self, ddb: Any, table: str) -> None:
        self.ddb, self.table = ddb, table

    def acquire(self, dataset: str, path: str, holder: str, until: float, now: float) -> bool:
        """Take the partition's lease until `until` unless someone else holds an unexpired one."""
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item={"pk": {"S": lease_pk(dataset, path)}, "sk": {"S": LEASE_SK}, "holder": {"S": holder},
                      "expires_at": {"N": str(int(until) + 1)}},
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now OR holder = :me",
                ExpressionAttributeValues={":now": {"N": str(int(now))}, ":me": {"S": holder}},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def release(self, dataset: str, path: str, holder: str) -> None:
        """Drop the lease if it is still ours (after expiry another holder may own it: keep theirs)."""
        try:
            self.ddb.delete_item(
                TableName=self.table,
                Key={"pk": {"S": lease_pk(dataset, path)}, "sk": {"S": LEASE_SK}},
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": {"S": holder}},
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    def mark(self, ref: PartitionRef, path: str, now: float) -> None:
        self.ddb.update_item(
            TableName=self.table,
            Key={"pk": {"S": marker_pk(ref.dataset)}, "sk": {"S": path}},
            UpdateExpression="SET #v = :v, last_added = :t, expires_at = :e",
            ExpressionAttributeNames={"#v": "values"},
            ExpressionAttributeValues={":v": {"S": json.dumps(dict(ref.values), sort_keys=True)},
                                       ":t": {"N": repr(now)}, ":e": {"N": str(int(now + MARKER_TTL_SECONDS))}},
        )

    def markers(self, dataset: str) -> list[Marker]:
        pages = self.ddb.get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": marker_pk(dataset)}}, ConsistentRead=True,
        )
        return [
            Marker(PartitionRef(dataset, json.loads(i["values"]["S"])), i["sk"]["S"], float(i["last_added"]["N"]))
            for page in pages for i in page["Items"]
        ]

    def clear(self, marker: Marker) -> bool:
        """Delete the marker unless a file was added since it was read; False if one was."""
        try:
            self.ddb.delete_item(
                TableName=self.table,
                Key={"pk": {"S": marker_pk(marker.ref.dataset)}, "sk": {"S": marker.path}},
                ConditionExpression="last_added <= :t",
                ExpressionAttributeValues={":t": {"N": repr(marker.last_added)}},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True
