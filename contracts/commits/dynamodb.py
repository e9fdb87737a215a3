"""The state table on DynamoDB: the committer's StateTable."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import ClientError

from contracts import aws
from contracts.commits.errors import ConditionFailed, error_code
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
        if expected is None:
            cond: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            cond = {
                "ConditionExpression": "#v = :v",
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {":v": {"N": str(expected)}},
            }
        try:
            aws.client("dynamodb").put_item(TableName=self.table_name, Item=_to_dynamo(item), **cond)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ConditionFailed(f"{item['pk']}/{item['sk']}: version is not {expected}") from exc
            raise

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


def _to_dynamo(item: Item) -> dict[str, Any]:
    return {k: {"N": str(v)} if isinstance(v, int) else {"S": v} for k, v in item.items()}


def _from_dynamo(item: Mapping[str, Any]) -> Item:
    return {k: int(v["N"]) if "N" in v else v["S"] for k, v in item.items()}
