"""The state table on DynamoDB: the committer's StateTable."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from contracts import aws
from contracts.commits.errors import CommitError, ConditionFailed, error_code
from contracts.commits.ports import Item


class DynamoStateTable:
    """The state table (pk S hash, sk S range, TTL on `expires_at`); items hold only strings and ints."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def get(self, pk: str, sk: str) -> Item | None:
        resp = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        return _from_dynamo(resp["Item"]) if "Item" in resp else None

    def put(self, item: Item) -> None:
        aws.client("dynamodb").put_item(TableName=self.table_name, Item=_to_dynamo(item))

    def put_if_version(self, item: Item, expected: int | None) -> None:
        try:
            aws.client("dynamodb").put_item(TableName=self.table_name, Item=_to_dynamo(item), **_condition(expected))
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ConditionFailed(f"{item['pk']}/{item['sk']}: version is not {expected}") from exc
            raise

    def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Item]:
        """Strongly consistent BatchGetItem, 100 keys a request; each item is read consistently, not all at once."""
        ddb, found = aws.client("dynamodb"), {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 100):
            keyed = [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in unique[i : i + 100]]
            request: dict[str, Any] = {self.table_name: {"Keys": keyed, "ConsistentRead": True}}
            for retry in range(_UNPROCESSED_RETRIES):
                resp = ddb.batch_get_item(RequestItems=request)
                for raw in resp["Responses"].get(self.table_name, []):
                    item = _from_dynamo(raw)
                    found[(str(item["pk"]), str(item["sk"]))] = item
                request = resp.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(_backoff(retry))
            else:
                raise CommitError(
                    f"{self.table_name}: BatchGetItem left keys unprocessed after {_UNPROCESSED_RETRIES} tries"
                )
        return found

    def put_many(self, items: Sequence[Item]) -> None:
        """BatchWriteItem, 25 items a request (plain puts: one write unit per KB, as put_item)."""
        ddb = aws.client("dynamodb")
        for i in range(0, len(items), 25):
            request: dict[str, Any] = {
                self.table_name: [{"PutRequest": {"Item": _to_dynamo(it)}} for it in items[i : i + 25]]
            }
            for retry in range(_UNPROCESSED_RETRIES):
                request = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                if not request:
                    break
                time.sleep(_backoff(retry))
            else:
                raise CommitError(
                    f"{self.table_name}: BatchWriteItem left items unprocessed after {_UNPROCESSED_RETRIES} tries"
                )

    def query_until(self, pk: str, sk_max: str) -> Iterator[Item]:
        pages = (
            aws.client("dynamodb")
            .get_paginator("query")
            .paginate(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk AND sk <= :m",
                ExpressionAttributeValues={":pk": {"S": pk}, ":m": {"S": sk_max}},
                ConsistentRead=True,
            )
        )
        for page in pages:
            yield from (_from_dynamo(i) for i in page["Items"])

    def delete(self, pk: str, sk: str) -> None:
        aws.client("dynamodb").delete_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}})


_UNPROCESSED_RETRIES = 8


def _backoff(retry: int) -> float:
    """Unprocessed batch entries are throttling: back off exponentially with jitter, as the SDKs advise."""
    return random.uniform(0, min(2.0, 0.05 * 2**retry))


def _condition(expected: int | None) -> dict[str, Any]:
    """The put's condition: no item yet (expected None) or the item at version `expected`."""
    if expected is None:
        return {"ConditionExpression": "attribute_not_exists(pk)"}
    return {
        "ConditionExpression": "#v = :v",
        "ExpressionAttributeNames": {"#v": "version"},
        "ExpressionAttributeValues": {":v": {"N": str(expected)}},
    }


def _to_dynamo(item: Item) -> dict[str, Any]:
    return {k: {"N": str(v)} if isinstance(v, int) else {"S": v} for k, v in item.items()}


def _from_dynamo(item: Mapping[str, Any]) -> Item:
    return {k: int(v["N"]) if "N" in v else v["S"] for k, v in item.items()}
