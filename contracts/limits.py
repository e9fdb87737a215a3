"""AWS limits the emulator does not enforce, in one place, checked before the call that would fail.

moto accepts a 1,500-byte key, 10 KB of user metadata or a 300 KB event; AWS refuses them, and a
refusal in a handler is retried until the DLQ although it can never succeed. Services check these
limits first and end the object with a reason instead (docs/design/failures.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: S3 object key, bytes of its UTF-8 encoding
S3_KEY_BYTES = 1024
#: S3 user-defined metadata: the sum of the UTF-8 bytes of every key and value
S3_USER_METADATA_BYTES = 2 * 1024
#: EventBridge PutEvents: one entry (Source, DetailType, Detail, Resources, Time) and the whole request
EVENT_ENTRY_BYTES = 256 * 1024
#: SQS message body (EventBridge delivers an event as one message: envelope + detail)
SQS_MESSAGE_BYTES = 256 * 1024
#: DynamoDB item: attribute names and values. Status items stay far below it by construction: keys are at
#: most S3_KEY_BYTES, reasons at most REASON_CHARS, and no row data is ever stored in them
DYNAMODB_ITEM_BYTES = 400 * 1024
#: an identity partition value in a lake key (`name=value/`): a share of the key that leaves room for the
#: dataset, the other partitions, the generation prefix and the file name
PARTITION_VALUE_BYTES = 255
#: reasons the platform writes (status items, events): long enough to say why, far below every limit
REASON_CHARS = 1000


class LimitExceeded(ValueError):
    """A request would exceed an AWS limit: it can never succeed, so it is not retried."""


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def key_problem(key: str, what: str = "key") -> str | None:
    """Why S3 would refuse this key, or None."""
    n = utf8_len(key)
    if n > S3_KEY_BYTES:
        return (f"the {what} would be {n:,} bytes; S3 allows {S3_KEY_BYTES:,} "
                f"(shorten the landing key by {n - S3_KEY_BYTES:,} bytes)")
    return None


def metadata_bytes(metadata: Mapping[str, str]) -> int:
    """S3's measure of user metadata: UTF-8 bytes of every key and value."""
    return sum(utf8_len(k) + utf8_len(v) for k, v in metadata.items())


def metadata_problem(metadata: Mapping[str, str]) -> str | None:
    n = metadata_bytes(metadata)
    if n > S3_USER_METADATA_BYTES:
        return (f"user metadata would be {n:,} bytes with the platform's lineage entries (the landing key, "
                f"percent-encoded, among them); S3 allows {S3_USER_METADATA_BYTES:,}: shorten the key or its metadata")
    return None


def event_entry_bytes(entry: Mapping[str, Any]) -> int:
    """PutEvents entry size as AWS computes it (Time counts 14 bytes, then UTF-8 of the text fields)."""
    size = 14
    for field in ("Source", "DetailType", "Detail"):
        size += utf8_len(str(entry.get(field) or ""))
    size += sum(utf8_len(r) for r in entry.get("Resources") or [])
    return size


def event_problem(entry: Mapping[str, Any]) -> str | None:
    n = event_entry_bytes(entry)
    # the SQS delivery adds the envelope (id, time, account, region, …: well under 1 KB) to the detail
    if n > min(EVENT_ENTRY_BYTES, SQS_MESSAGE_BYTES) - 1024:
        return f"event {entry.get('DetailType')} would be {n:,} bytes; EventBridge and SQS allow {EVENT_ENTRY_BYTES:,}"
    return None


def reason(text: str) -> str:
    """A reason cut to REASON_CHARS (reasons go into status items and events)."""
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"
