"""Platform events: source, detail-type and a versioned detail schema, defined once.

Infra builds rule patterns from these constants, services publish through `publish`, and tests
validate every emitted event with `parse_event`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from contracts import limits

SOURCE_PREFIX = "etl"
PUT_EVENTS_BATCH = 10


class EventDetail(BaseModel):
    """Base of every platform event's detail; subclasses set SOURCE and DETAIL_TYPE."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    SOURCE: ClassVar[str]
    DETAIL_TYPE: ClassVar[str]
    schema_version: int = 1

    def entry(self, bus_name: str) -> dict[str, Any]:
        return {
            "Source": self.SOURCE,
            "DetailType": self.DETAIL_TYPE,
            "Detail": self.model_dump_json(),
            "EventBusName": bus_name,
        }


class RawObjectStored(EventDetail):
    """A landing object was copied, untouched, to the raw bucket."""

    SOURCE = f"{SOURCE_PREFIX}.ingest"
    DETAIL_TYPE = "RawObjectStored"
    dataset: str
    object_id: str = Field(description="stable id of the landing object version (lineage key)")
    raw_bucket: str
    raw_key: str
    size: int = Field(ge=0)
    etag: str
    source_bucket: str
    source_key: str
    source_version: str | None = None
    content_type: str | None = None


class ObjectRejected(EventDetail):
    """A landing object cannot enter the platform; it is kept (raw copy) and the reason is given."""

    SOURCE = f"{SOURCE_PREFIX}.ingest"
    DETAIL_TYPE = "ObjectRejected"
    dataset: str | None
    object_id: str
    reason: str
    source_bucket: str
    source_key: str
    source_version: str | None = None
    size: int = Field(ge=0)
    raw_bucket: str | None = None
    raw_key: str | None = None


class ChunkPlanned(EventDetail):
    """One line-aligned byte range of a big raw object, to be transformed by its own invocation."""

    SOURCE = f"{SOURCE_PREFIX}.transform"
    DETAIL_TYPE = "ChunkPlanned"
    dataset: str
    object_id: str
    raw_bucket: str
    raw_key: str
    chunk_index: int = Field(ge=0)
    chunk_count: int = Field(ge=1)
    start: int = Field(ge=0)
    end: int = Field(ge=0, description="exclusive")
    first_line: int = Field(ge=1, description="1-based line number of the chunk's first line in the object")


class PartitionFilesAdded(EventDetail):
    """Files were committed to one partition of a dataset (compaction counts them)."""

    SOURCE = f"{SOURCE_PREFIX}.transform"
    DETAIL_TYPE = "PartitionFilesAdded"
    dataset: str
    partition: dict[str, str]
    generation: int = Field(ge=0)
    files: list[str]
    rows: int = Field(ge=0)
    bytes: int = Field(ge=0)
    object_id: str


class ObjectTransformed(EventDetail):
    """Every chunk of a raw object is in the lake (and its bad rows in quarantine)."""

    SOURCE = f"{SOURCE_PREFIX}.transform"
    DETAIL_TYPE = "ObjectTransformed"
    dataset: str
    object_id: str
    raw_key: str
    chunks: int = Field(ge=1)
    rows_in: int = Field(ge=0)
    rows_good: int = Field(ge=0)
    rows_quarantined: int = Field(ge=0)
    partitions: int = Field(ge=0)


class ObjectFailed(EventDetail):
    """A raw object (or chunk) could not be transformed; the raw copy is kept.

    `permanent`: the failure can never succeed (ended at once, no retry, no DLQ message); otherwise
    every retry failed and the message is in the DLQ. Version 2 added `permanent`.
    """

    SOURCE = f"{SOURCE_PREFIX}.transform"
    DETAIL_TYPE = "ObjectFailed"
    schema_version: int = 2
    dataset: str
    object_id: str
    raw_key: str
    chunk_index: int | None = None
    reason: str
    attempts: int = Field(ge=1)
    permanent: bool = False


class IngestFailed(EventDetail):
    """A landing object could not be copied to raw after every retry; the message is in the ingest DLQ.

    Objects that can never be ingested are ObjectRejected instead (at once, no retry).
    """

    SOURCE = f"{SOURCE_PREFIX}.ingest"
    DETAIL_TYPE = "IngestFailed"
    dataset: str | None
    object_id: str
    source_bucket: str
    source_key: str
    source_version: str | None = None
    reason: str
    attempts: int = Field(ge=1)


class PartitionCompacted(EventDetail):
    """Small files of a partition were rewritten into few large ones and swapped in atomically."""

    SOURCE = f"{SOURCE_PREFIX}.compact"
    DETAIL_TYPE = "PartitionCompacted"
    dataset: str
    partition: dict[str, str]
    generation: int = Field(ge=0)
    files_before: int = Field(ge=0)
    files_after: int = Field(ge=0)
    bytes_before: int = Field(ge=0)
    bytes_after: int = Field(ge=0)
    rows: int = Field(ge=0)
    duration_ms: int = Field(ge=0)


class ErasureRequested(EventDetail):
    """A right-to-be-forgotten request from another system. Subject ids travel only inside this
    event to the erasure service, which stores them encrypted at rest and logs only salted hashes."""

    SOURCE = f"{SOURCE_PREFIX}.erasure-intake"
    DETAIL_TYPE = "ErasureRequested"
    subject_ids: list[str] = Field(min_length=1)
    datasets: list[str] | None = None
    reason: str
    requested_by: str
    ticket: str | None = None
    client_request_id: str | None = None


class ErasureCompleted(EventDetail):
    """An erasure request ended; carries only salted hashes of the subjects, never their ids."""

    SOURCE = f"{SOURCE_PREFIX}.erasure"
    DETAIL_TYPE = "ErasureCompleted"
    request_id: str
    state: str
    subject_hashes: list[str]
    datasets: list[str]
    rows_removed: int = Field(ge=0)
    files_rewritten: int = Field(ge=0)
    verified: bool


EVENT_TYPES: dict[str, type[EventDetail]] = {
    cls.DETAIL_TYPE: cls
    for cls in (
        RawObjectStored,
        ObjectRejected,
        ChunkPlanned,
        PartitionFilesAdded,
        ObjectTransformed,
        ObjectFailed,
        IngestFailed,
        PartitionCompacted,
        ErasureRequested,
        ErasureCompleted,
    )
}


def register(cls: type[EventDetail]) -> type[EventDetail]:
    """Add an event type defined by another contract module (keeps one registry)."""
    EVENT_TYPES[cls.DETAIL_TYPE] = cls
    return cls


def pattern(*types: type[EventDetail]) -> dict[str, Any]:
    """EventBridge pattern matching exactly these platform events."""
    return {
        "source": sorted({t.SOURCE for t in types}),
        "detail-type": sorted({t.DETAIL_TYPE for t in types}),
    }


def s3_object_created_pattern(bucket_name: str) -> dict[str, Any]:
    """Pattern for S3 'Object Created' events of one bucket (as S3 sends them to the default bus)."""
    return {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": {"bucket": {"name": [bucket_name]}}}


def parse_event(envelope: dict[str, Any] | str) -> EventDetail:
    """Validate an EventBridge envelope against the contract; raises on unknown type or bad detail."""
    env = json.loads(envelope) if isinstance(envelope, str) else envelope
    cls = EVENT_TYPES.get(env.get("detail-type", ""))
    if cls is None:
        raise ValueError(f"unknown detail-type {env.get('detail-type')!r}")
    if env.get("source") != cls.SOURCE:
        raise ValueError(f"{cls.DETAIL_TYPE} must come from {cls.SOURCE}, not {env.get('source')!r}")
    return cls.model_validate(env["detail"])


class PublishError(RuntimeError):
    """EventBridge refused some entries; raising makes the message retry instead of losing events."""


def _batches(entries: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    """At most 10 entries and 256 KB per PutEvents request."""
    batch: list[dict[str, Any]] = []
    size = 0
    for e in entries:
        n = limits.event_entry_bytes(e)
        if batch and (len(batch) == PUT_EVENTS_BATCH or size + n > limits.EVENT_ENTRY_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(e)
        size += n
    if batch:
        yield batch


def publish(events_client: Any, bus_name: str, details: Sequence[EventDetail] | Iterable[EventDetail]) -> int:
    """Put events in batches of 10 and raise if any entry failed.

    An entry over EventBridge's size limit raises LimitExceeded before any call (moto would take it).
    """
    entries = [d.entry(bus_name) for d in details]
    for e in entries:
        problem = limits.event_problem(e)
        if problem:
            raise limits.LimitExceeded(problem)
    for batch in _batches(entries):
        resp = events_client.put_events(Entries=batch)
        if resp.get("FailedEntryCount"):
            errors = [e for e in resp["Entries"] if e.get("ErrorCode")]
            raise PublishError(f"{len(errors)} of {len(batch)} events refused: {errors[:3]}")
    return len(entries)
