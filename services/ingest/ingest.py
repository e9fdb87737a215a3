"""The ingest decision for one landing object: copy to raw, then RawObjectStored or ObjectRejected.

Everything that can never succeed is decided here, before any AWS call that would fail on AWS but
not on the emulator (contracts/limits.py): a derived raw key over S3's 1,024 bytes, user metadata
over 2 KB. Such an object is rejected with its reason — its raw copy kept under a key that fits —
instead of failing, retrying and dead-lettering (docs/design/failures.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from contracts import layout, limits
from contracts.datasets import load_datasets
from contracts.events import EventDetail, ObjectRejected, RawObjectStored
from services.ingest.copy import copy_to_raw
from services.ingest.landing import LandedObject


@dataclass(frozen=True)
class Outcome:
    event: EventDetail
    raw_key: str | None
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


def lineage_metadata(obj: LandedObject, object_id: str) -> dict[str, str]:
    """What every raw copy carries besides the producer's metadata (erasure finds the landing original by it)."""
    return {
        "etl-object-id": object_id,
        "etl-source-bucket": obj.bucket,
        "etl-source-key": quote(obj.key, safe="/"),
        "etl-source-etag": obj.etag,
    }


def fit_key(prefix: str, name: str) -> str:
    """`prefix + name`, the name cut from the front (keeping its end: file name, extension) to fit S3's limit."""
    room = limits.S3_KEY_BYTES - limits.utf8_len(prefix)
    raw = name.encode("utf-8")
    if len(raw) <= room:
        return prefix + name
    return prefix + raw[len(raw) - room :].decode("utf-8", "ignore")


def ingest(s3: Any, obj: LandedObject, raw_bucket: str) -> Outcome:
    """Always copy (the raw copy is what is kept), then say what happens next."""
    oid = layout.object_id(obj.bucket, obj.key, obj.version_or_etag)
    parsed = layout.LandingKey.parse(obj.key)
    received = (obj.event_time or "0000-00-00")[:10]
    reason = rejection_reason(obj, parsed.dataset)
    raw_key = layout.raw_key(parsed.dataset if reason is None else None, received, oid,
                             parsed.relative if reason is None else obj.key)
    lineage = lineage_metadata(obj, oid)
    metadata = {**obj.metadata, **lineage}
    if reason is None:
        reason = limits.key_problem(raw_key, "raw copy key") or limits.metadata_problem(metadata)
    if reason is not None:
        raw_key = fit_key(layout.raw_key(None, received, oid, ""), obj.key)
        if limits.metadata_problem(metadata):  # the producer's metadata is the problem: keep ours only
            metadata = lineage if not limits.metadata_problem(lineage) else {
                k: v for k, v in lineage.items() if k != "etl-source-key"}
    copy_to_raw(s3, obj, raw_bucket, raw_key, metadata)
    common: dict[str, Any] = dict(object_id=oid, source_bucket=obj.bucket, source_key=obj.key,
                                  source_version=obj.version)
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


def missing(ref: dict[str, Any]) -> Outcome:
    """The landing object no longer exists (deleted before ingest ran): rejected at once, nothing to copy."""
    return refused(ref, f"landing object s3://{ref['bucket']}/{ref['key']} (version {ref['version']}) no longer "
                        "exists: it was deleted before ingest ran — upload it again to ingest it")


def refused(ref: dict[str, Any], reason: str) -> Outcome:
    """Rejected without a raw copy (none could be made); the landing object, if any, is untouched."""
    oid = layout.object_id(ref["bucket"], ref["key"], ref["version"] or ref["etag"])
    event = ObjectRejected(dataset=layout.LandingKey.parse(ref["key"]).dataset, object_id=oid, reason=reason,
                           source_bucket=ref["bucket"], source_key=ref["key"], source_version=ref["version"], size=0)
    return Outcome(event, None, True)
