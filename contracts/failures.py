"""Permanent or transient: how a handler ends a failure (docs/design/failures.md).

A permanent failure can never succeed however often it is retried (bytes that are not UTF-8, a
header that does not match the contract, a key or event over an AWS limit, an object that no longer
exists): the handler ends it at once with a status record and an event that say why, and the message
is deleted — a DLQ message would be noise that `etl dlq redrive` cannot fix. Anything else is
transient: the message is retried, and on its last attempt the handler writes the status record
before the message goes to the DLQ, so every dead-lettered message has its reason in `etl status`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from contracts.limits import LimitExceeded, reason

#: the queue's maxReceiveCount, passed by infra (QueueFunction's redrive policy uses the same setting)
MAX_RECEIVE_COUNT_ENV = "MAX_RECEIVE_COUNT"
#: S3/EventBridge/DynamoDB error codes that no retry can fix (the request itself is refused)
PERMANENT_CODES = frozenset({
    "KeyTooLongError", "MetadataTooLarge", "EntityTooLarge", "InvalidObjectState", "ItemCollectionSizeLimitExceeded",
})


class PermanentFailure(Exception):
    """This object can never succeed: end it now with this reason (no retry, no DLQ message)."""


def is_permanent(exc: BaseException) -> bool:
    if isinstance(exc, PermanentFailure | LimitExceeded):
        return True
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    return code in PERMANENT_CODES


def max_receive_count() -> int:
    return int(os.environ.get(MAX_RECEIVE_COUNT_ENV, "3"))


def receive_count(sqs_record: Mapping[str, Any]) -> int:
    """ApproximateReceiveCount of an SQS record as Lambda delivers it (1 when absent)."""
    return int((sqs_record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)


def last_attempt(receive_count: int | str | None) -> bool:
    """Is this delivery the last before SQS moves the message to the DLQ?"""
    return int(receive_count or 1) >= max_receive_count()


def describe(exc: BaseException) -> str:
    """The reason recorded for a failure: the exception's type and message, cut to a safe length."""
    return reason(f"{type(exc).__name__}: {exc}")
