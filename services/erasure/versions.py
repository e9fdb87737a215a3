"""Object versions: erasure deletes every old version of what it rewrites, not only the current one.

The listing and the batched deletes are the lake bucket's object store of partition commits
(contracts.commits.S3ObjectStore), so cleanup and erasure purge versions the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

from contracts.commits import S3ObjectStore


def versions(bucket: str, prefix: str, *, exact: bool = False) -> Iterator[tuple[str, str]]:
    """(key, version id) of every version and delete marker under `prefix` (or of exactly that key)."""
    return S3ObjectStore(bucket).versions(prefix, exact=exact)


def delete_versions(bucket: str, found: list[tuple[str, str]]) -> int:
    return S3ObjectStore(bucket).delete_versions(found)


def purge_key(bucket: str, key: str, *, keep: str | None = None) -> int:
    """Delete every version of `key` except `keep` (the version just written, if any)."""
    store = S3ObjectStore(bucket)
    return store.delete_versions([(k, v) for k, v in store.versions(key, exact=True) if v != keep])


def purge_prefix(bucket: str, prefix: str) -> int:
    return S3ObjectStore(bucket).purge_prefix(prefix)
