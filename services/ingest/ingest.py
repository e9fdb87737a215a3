"""The ingest decision for one landing object: copy to raw, then RawObjectStored or ObjectRejected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts import layout
from contracts.datasets import load_datasets
from contracts.events import EventDetail, ObjectRejected, RawObjectStored
from services.ingest.copy import copy_to_raw
from services.ingest.landing import LandedObject


@dataclass(frozen=True)
class Outcome:
    event: EventDetail
    raw_key: str
    rejected: bool


def rejection_reason(obj: LandedObject, dataset: str | None) -> str | None:
    """Why this object cannot go further than its raw copy, or None when it can."""
    problem = layout.key_problem(obj.key)
    if problem:
        return problem
    if dataset is None:
        return "key has no dataset folder: drop files under <dataset>/…"
    known = load_datasets()
    if dataset not in known:
        return f"unknown dataset {dataset!r} (known: {', '.join(sorted(known)) or 'none'})"
    if obj.size == 0:
        return "object is empty (0 bytes)"
    return None


def ingest(s3: Any, obj: LandedObject, raw_bucket: str) -> Outcome:
    """Always copy (the raw copy is what is kept), then say what happens next."""
    oid = layout.object_id(obj.bucket, obj.key, obj.version_or_etag)
    parsed = layout.LandingKey.parse(obj.key)
    reason = rejection_reason(obj, parsed.dataset)
    dataset = parsed.dataset if reason is None else None
    received = (obj.event_time or "0000-00-00")[:10]
    raw_key = layout.raw_key(dataset, received, oid, parsed.relative if dataset else obj.key)
    copy_to_raw(s3, obj, raw_bucket, raw_key, oid)
    common = dict(object_id=oid, source_bucket=obj.bucket, source_key=obj.key, source_version=obj.version)
    if reason is not None:
        event: EventDetail = ObjectRejected(
            dataset=parsed.dataset, reason=reason, size=obj.size, raw_bucket=raw_bucket, raw_key=raw_key, **common
        )
        return Outcome(event, raw_key, True)
    event = RawObjectStored(
        dataset=parsed.dataset,
        raw_bucket=raw_bucket,
        raw_key=raw_key,
        size=obj.size,
        etag=obj.etag,
        content_type=obj.content_type,
        **common,
    )
    return Outcome(event, raw_key, False)
