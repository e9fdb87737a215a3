"""Lake keys: where a partition's generations, committed files and staged files live.

A partition's committed files live under `<dataset>/<k1=v1>/<k2=v2>/gen=<n>/`, and its Glue partition
points at exactly one generation: a reader sees the files of that generation and nothing else.
Writers stage files under `_staging/`, outside every table prefix (and hidden from Hive by the
leading underscore), so a staged file is never visible before it is committed.

Never register lake partitions by crawling or `MSCK REPAIR TABLE`, and never glob a table prefix:
both would read every generation at once. Partitions are registered by `contracts.commits` only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

STAGING_ROOT = "_staging/"
GENERATION_RE = re.compile(r"gen=(\d+)/$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: characters Hive percent-escapes in partition directory names (FileUtils.escapePathName)
_HIVE_ESCAPED = frozenset("\"#%'*/:=?\\{[]^\x7f") | frozenset(chr(c) for c in range(0x20))


def escape_value(value: str) -> str:
    """A partition value as Hive writes it in a path (so `a/b` cannot open a new directory level)."""
    if value == "":
        raise ValueError("a partition value cannot be empty")
    return "".join(f"%{ord(ch):02X}" if ch in _HIVE_ESCAPED else ch for ch in value)


def partition_path(names: Sequence[str], values: Mapping[str, str]) -> str:
    """`k1=v1/k2=v2` in the dataset's partition-key order; the keys must be exactly `names`."""
    if set(values) != set(names) or len(values) != len(names):
        raise ValueError(f"partition values {sorted(values)} do not match the partition keys {list(names)}")
    return "/".join(f"{name}={escape_value(values[name])}" for name in names)


def partition_prefix(dataset: str, path: str) -> str:
    return f"{dataset}/{path}/"


def generation_prefix(dataset: str, path: str, generation: int) -> str:
    """Prefix of one generation; the trailing slash keeps gen=1 from matching gen=10."""
    if generation < 1:
        raise ValueError(f"generation {generation} < 1 has no files")
    return f"{partition_prefix(dataset, path)}gen={generation}/"


def file_key(dataset: str, path: str, generation: int, name: str) -> str:
    return generation_prefix(dataset, path, generation) + check_name(name)


def op_digest(op_id: str) -> str:
    """Fixed-length digest of an op id: names its files and keys its records (op ids may be long)."""
    if not op_id or len(op_id) > 512:
        raise ValueError("an op id must be 1 to 512 characters")
    return hashlib.sha256(op_id.encode()).hexdigest()[:32]


def committed_name(digest: str, index: int) -> str:
    """Name of the index-th file an op adds: deterministic, so a retry writes the same names."""
    return f"part-{digest[:16]}-{index:04d}.parquet"


def staging_key(dataset: str, path: str, digest: str, attempt: str, name: str) -> str:
    """Staged file of one attempt of one op; attempts never share keys (see commits.reserve_staging)."""
    return f"{STAGING_ROOT}{dataset}/{path}/{digest}/{attempt}/{check_name(name)}"


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"file name {name!r} must be 1-128 of A-Z a-z 0-9 . _ - (no slash)")
    return name


def s3_uri(bucket: str, key_or_prefix: str) -> str:
    return f"s3://{bucket}/{key_or_prefix}"


def generation_of(location: str, bucket: str, dataset: str, path: str) -> int | None:
    """The generation a Glue location points at, or None when it is not one of this partition's."""
    base = s3_uri(bucket, partition_prefix(dataset, path))
    if not location.startswith(base):
        return None
    match = GENERATION_RE.fullmatch(location[len(base) :])
    return int(match.group(1)) if match else None
