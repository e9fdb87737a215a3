"""Lake layout: how keys of raw, lake and quarantine objects are formed.

Every key the platform writes is derived here so that erasure can find every copy from lineage.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass

REJECTED_PREFIX = "_rejected"


def object_id(bucket: str, key: str, version_or_etag: str) -> str:
    """Stable id of one landing object version: the lineage key carried by every derived row."""
    digest = hashlib.sha256(f"{bucket}\0{key}\0{version_or_etag}".encode()).hexdigest()
    return digest[:20]


@dataclass(frozen=True)
class LandingKey:
    """A landing key split into its dataset segment and the rest."""

    dataset: str | None
    relative: str

    @classmethod
    def parse(cls, key: str) -> LandingKey:
        head, sep, rest = key.partition("/")
        if not sep or not head or not rest:
            return cls(None, key)
        return cls(head, rest)


def key_problem(key: str) -> str | None:
    """Why a landing key cannot be ingested as is, or None. Spaces, '+' and unicode are fine."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        return "key contains control characters"
    if unicodedata.normalize("NFC", key) != key:
        return "key is not NFC-normalised unicode (ambiguous for downstream tools)"
    parts = key.split("/")
    if any(p in (".", "..") for p in parts):
        return "key contains '.' or '..' path segments"
    if key.endswith("/"):
        return "key is a folder marker"
    return None


def raw_key(dataset: str | None, received_date: str, oid: str, relative: str) -> str:
    """Raw copy key: unique per landing object version, grouped by dataset and day of arrival."""
    prefix = dataset if dataset else REJECTED_PREFIX
    return f"{prefix}/received={received_date}/{oid}/{relative}"


def quarantine_key(dataset: str, oid: str, chunk_index: int) -> str:
    """Quarantined rows of one chunk: deterministic, so a retry overwrites instead of duplicating."""
    return f"{dataset}/object={oid}/chunk-{chunk_index:05d}.parquet"
