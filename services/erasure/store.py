"""Requests, runs and their indexes in the erasure table; subject ids in the vault table (pk/sk, TTL on `expires_at`).

Both tables belong to the erasure stack (no other service's role names them); the vault table has
no point-in-time recovery, so an id deleted from it cannot be restored (docs/design/erasure.md).
Every item lives under pk `erasure` (requests are few; one partition keeps listing a single Query):
  request#<id>      the request record (JSON body, `state`, `version` for conditional writes)
  pending#<id>      while RECEIVED: what the next run takes
  open#<id>         while not terminal: deadline, for the at-risk metric
  client#<sha256>   idempotency: client request id (or event id) → request id
  vault#<id>        (vault table) the subject ids, only while the request is not terminal (see vault.py)
  run#<id>          a run (JSON body, `version`, `done` string set for fan-in, lease)
  active-run#<id>   while a run is not finished
Multi-item changes are DynamoDB transactions (they span both tables), so an index never disagrees with
its record and the vault item goes in the same write that ends its request.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from contracts import aws
from services.erasure.model import ErasureRequest
from services.erasure.runstate import RunState

if TYPE_CHECKING:
    from services.erasure.config import Config

PK = "erasure"
#: the vault item's TTL, after the request's deadline: a backstop only (the item is deleted when the request
#: ends); a request still open a month past its legal deadline must not keep ids forever
VAULT_BACKSTOP_S = 30 * 86400
REQUEST, PENDING, OPEN, CLIENT, VAULT, RUN, ACTIVE = (
    "request#", "pending#", "open#", "client#", "vault#", "run#", "active-run#")


class Conflict(RuntimeError):
    """A conditional write lost (someone else changed the item first)."""


class IdempotencyConflict(ValueError):
    """A client request id was already used for a different request."""


class NotFound(KeyError):
    pass


def _s(v: str) -> dict[str, str]:
    return {"S": v}


def _n(v: float) -> dict[str, str]:
    return {"N": str(int(v)) if float(v).is_integer() else repr(float(v))}


def _key(sk: str) -> dict[str, Any]:
    return {"pk": _s(PK), "sk": _s(sk)}


def _plain(attr: dict[str, Any]) -> Any:
    ((kind, v),) = attr.items()
    if kind == "N":
        f = float(v)
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
    if kind == "SS":
        return set(v)
    if kind == "BOOL":
        return bool(v)
    return v


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _run_body(run: Run) -> str:
    return json.dumps(run.state.to_json())


def client_key(client_request_id: str) -> str:
    return CLIENT + hashlib.sha256(client_request_id.encode()).hexdigest()


@dataclass
class Run:
    """A batch of requests erased together; `state` is the plan and progress (stored as the item's JSON
    `body`), `done` the fan-in set of finished task ids."""

    id: str
    state: RunState
    done: set[str] = field(default_factory=set)
    version: int = 0


class Store:
    def __init__(self, table: str, vault_table: str | None = None) -> None:
        self.table = table
        self.vault_table = vault_table or table

    @classmethod
    def of(cls, cfg: Config) -> Store:
        return cls(cfg.records_table, cfg.vault)

    @property
    def ddb(self) -> Any:
        return aws.client("dynamodb")

    # -- requests -------------------------------------------------------------------------------
    def _request_item(self, req: ErasureRequest, version: int, retention_s: float) -> dict[str, Any]:
        item = {**_key(REQUEST + req.id), "state": _s(str(req.state)), "version": _n(version),
                "body": _s(json.dumps({**req.to_json(), "version": version}, separators=(",", ":")))}
        if req.terminal:
            item["expires_at"] = _n(int(time.time() + retention_s))
        return item

    def create(
        self,
        req: ErasureRequest,
        vault_item: dict[str, Any],
        *,
        idempotency_key: str | None,
        fingerprint: str,
        retention_s: float,
    ) -> tuple[ErasureRequest, bool]:
        """Store a new request with its indexes and vault item; (existing request, False) on a duplicate."""
        ops: list[dict[str, Any]] = [
            {"Put": {"TableName": self.table, "Item": self._request_item(req, 1, retention_s),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ]
        if idempotency_key:
            ops.append({"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(pk)",
                                "Item": {**_key(idempotency_key), "request_id": _s(req.id),
                                         "fingerprint": _s(fingerprint),
                                         "expires_at": _n(int(time.time() + retention_s))}}})
        if req.pending:  # awaiting approval: the run must not take it yet
            ops.append({"Put": {"TableName": self.table,
                                "Item": {**_key(PENDING + req.id), "received_at": _n(req.received_at)}}})
        if not req.terminal:  # a request refused at intake is recorded for the audit trail, nothing to run
            ops += [
                {"Put": {"TableName": self.table, "Item": {**_key(OPEN + req.id), "deadline": _n(req.deadline),
                                                           "received_at": _n(req.received_at)}}},
                {"Put": {"TableName": self.vault_table, "Item": {
                    **_key(VAULT + req.id), **vault_item, "expires_at": _n(int(req.deadline + VAULT_BACKSTOP_S))}}},
            ]
        try:
            self.ddb.transact_write_items(TransactItems=ops)
        except ClientError as exc:
            if _code(exc) != "TransactionCanceledException" or not idempotency_key:
                raise
            existing = self.ddb.get_item(TableName=self.table, Key=_key(idempotency_key), ConsistentRead=True)
            if "Item" not in existing:
                raise
            if existing["Item"]["fingerprint"]["S"] != fingerprint:
                raise IdempotencyConflict("this client_request_id was already used for a different request") from None
            return self.get(existing["Item"]["request_id"]["S"]), False
        req.version = 1
        return req, True

    def get(self, request_id: str) -> ErasureRequest:
        resp = self.ddb.get_item(TableName=self.table, Key=_key(REQUEST + request_id), ConsistentRead=True)
        if "Item" not in resp:
            raise NotFound(request_id)
        return ErasureRequest.from_json(json.loads(resp["Item"]["body"]["S"]))

    def update(
        self,
        request_id: str,
        change: Callable[[ErasureRequest], bool],
        *,
        retention_s: float,
        attempts: int = 10,
    ) -> ErasureRequest:
        """Read, let `change` mutate (returning False means "nothing to do"), write if unchanged meanwhile.

        Index items follow the state: pending# comes when an awaited approval is given and goes when
        the request leaves RECEIVED, open# and vault# go when it becomes terminal — in the same
        transaction as the record.
        """
        for _ in range(attempts):
            req = self.get(request_id)
            was_pending = req.pending
            if not change(req):
                return req
            ops: list[dict[str, Any]] = [{"Put": {
                "TableName": self.table, "Item": self._request_item(req, req.version + 1, retention_s),
                "ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": _n(req.version)}}}]
            if was_pending and not req.pending:
                ops.append({"Delete": {"TableName": self.table, "Key": _key(PENDING + req.id)}})
            elif req.pending and not was_pending:
                ops.append({"Put": {"TableName": self.table,
                                    "Item": {**_key(PENDING + req.id), "received_at": _n(req.received_at)}}})
            if req.terminal:
                ops.append({"Delete": {"TableName": self.table, "Key": _key(OPEN + req.id)}})
                ops.append({"Delete": {"TableName": self.vault_table, "Key": _key(VAULT + req.id)}})
            try:
                self.ddb.transact_write_items(TransactItems=ops)
            except ClientError as exc:
                if _code(exc) == "TransactionCanceledException":
                    continue
                raise
            req.version += 1
            return req
        raise Conflict(f"request {request_id}: too many concurrent updates")

    def list_requests(self, limit: int, after: str | None = None) -> tuple[list[ErasureRequest], str | None]:
        """Newest first; `after` is the last id of the previous page."""
        kw: dict[str, Any] = {
            "TableName": self.table, "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
            "ExpressionAttributeValues": {":pk": _s(PK), ":p": _s(REQUEST)}, "ScanIndexForward": False,
            "Limit": limit,
        }
        if after:
            kw["ExclusiveStartKey"] = _key(REQUEST + after)
        resp = self.ddb.query(**kw)
        reqs = [ErasureRequest.from_json(json.loads(i["body"]["S"])) for i in resp["Items"]]
        last = resp.get("LastEvaluatedKey")
        return reqs, (last["sk"]["S"][len(REQUEST):] if last else None)

    def _ids(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self.ddb.get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            ExpressionAttributeValues={":pk": _s(PK), ":p": _s(prefix)}, ConsistentRead=True)
        for page in pages:
            for item in page["Items"]:
                yield {k: _plain(v) for k, v in item.items()} | {"id": item["sk"]["S"][len(prefix):]}

    def pending(self) -> list[dict[str, Any]]:
        """Requests waiting for a run, oldest first: [{id, received_at}]."""
        return sorted(self._ids(PENDING), key=lambda i: i["received_at"])

    def open_requests(self) -> list[dict[str, Any]]:
        """Every non-terminal request: [{id, deadline, received_at}]."""
        return list(self._ids(OPEN))

    # -- vault ----------------------------------------------------------------------------------
    def vault_item(self, request_id: str) -> dict[str, Any] | None:
        resp = self.ddb.get_item(TableName=self.vault_table, Key=_key(VAULT + request_id), ConsistentRead=True)
        return resp.get("Item")

    # -- runs -----------------------------------------------------------------------------------
    def create_run(self, run: Run) -> None:
        self.ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(pk)",
                     "Item": {**_key(RUN + run.id), "version": _n(1), "body": _s(_run_body(run))}}},
            {"Put": {"TableName": self.table, "Item": {**_key(ACTIVE + run.id), "created_at": _n(time.time())}}},
        ])
        run.version = 1

    def get_run(self, run_id: str) -> Run:
        resp = self.ddb.get_item(TableName=self.table, Key=_key(RUN + run_id), ConsistentRead=True)
        if "Item" not in resp:
            raise NotFound(run_id)
        item = resp["Item"]
        return Run(run_id, RunState.model_validate_json(item["body"]["S"]), set(item.get("done", {}).get("SS", [])),
                   int(item["version"]["N"]))

    def save_run(self, run: Run, *, finished: bool = False, retention_s: float = 0) -> None:
        """Conditional on the version read (Conflict otherwise); `finished` drops the active index."""
        expr = "SET body = :b, version = :n"
        values = {":b": _s(_run_body(run)), ":n": _n(run.version + 1), ":v": _n(run.version)}
        if finished:
            expr += ", expires_at = :e"
            values[":e"] = _n(int(time.time() + retention_s))
        op = {"Update": {"TableName": self.table, "Key": _key(RUN + run.id), "UpdateExpression": expr,
                         "ConditionExpression": "version = :v", "ExpressionAttributeValues": values}}
        ops = [op] + ([{"Delete": {"TableName": self.table, "Key": _key(ACTIVE + run.id)}}] if finished else [])
        try:
            self.ddb.transact_write_items(TransactItems=ops)
        except ClientError as exc:
            if _code(exc) == "TransactionCanceledException":
                raise Conflict(f"run {run.id} changed meanwhile") from None
            raise
        run.version += 1

    def mark_done(self, run_id: str, task_ids: Sequence[str]) -> set[str]:
        """Add tasks to the run's done set (idempotent) and return the whole set."""
        resp = self.ddb.update_item(
            TableName=self.table, Key=_key(RUN + run_id), UpdateExpression="ADD done :d",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":d": {"SS": list(task_ids)}}, ReturnValues="ALL_NEW")
        return set(resp["Attributes"].get("done", {}).get("SS", []))

    def active_runs(self) -> list[str]:
        return sorted(i["id"] for i in self._ids(ACTIVE))

    def lease(self, run_id: str, owner: str, until: float, now: float) -> bool:
        """Take the run's lease (one tick advances a run at a time); False if someone holds it."""
        try:
            self.ddb.update_item(
                TableName=self.table, Key=_key(RUN + run_id),
                UpdateExpression="SET lease_owner = :o, lease_until = :u",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(lease_until) OR "
                                    "lease_until < :now OR lease_owner = :o)",
                ExpressionAttributeValues={":o": _s(owner), ":u": _n(until), ":now": _n(now)})
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(self, run_id: str, owner: str) -> None:
        try:
            self.ddb.update_item(
                TableName=self.table, Key=_key(RUN + run_id), UpdateExpression="REMOVE lease_owner, lease_until",
                ConditionExpression="lease_owner = :o", ExpressionAttributeValues={":o": _s(owner)})
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
