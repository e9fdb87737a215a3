"""PURGE of the copies outside the lake: quarantine rows and raw copies (and the landing original).

Quarantine files (`<dataset>/object=<oid>/chunk-N.parquet`) keep refused rows as the original
strings, so a subject is matched on the text of its subject columns (`042` is customer 42 in an
int64 column) and, for rows that could not even be split into fields, on the subject id as a
whole token of the raw line (`_raw`). A file is rewritten without those rows, or deleted when none
remain; then every older version of the key is deleted.

Raw copies (`<dataset>/received=<day>/<oid>/<name>`, CSV or JSON Lines, maybe gzip) are found
through lineage: the `_source_object_id` and `_source_line` of every erased lake or quarantine row.
The subject's records are blanked (every physical line of each, by `contracts.records`, the rule
transform reads by: a quoted CSV value may span lines; their bytes removed, their line breaks kept),
so every other row keeps its line number, its lineage stays true, and a replay of the object yields
the same rows minus the erased ones (transform skips empty lines). Objects larger than the rewrite
limit are deleted instead: the raw copy is a TTL'd safety copy, and the lake keeps every other row.
Old versions are deleted either way, and the landing original is deleted if it is still there.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from contracts import aws, records
from contracts.datasets import Dataset
from contracts.lineage import LINE_COLUMN, OBJECT_COLUMN, RAW_COLUMN
from services.erasure.subjects import Subjects, typed_value
from services.erasure.versions import purge_key, versions

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = records.UTF8_BOM


# -- quarantine -----------------------------------------------------------------------------------
def _raw_token(subject_id: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![0-9A-Za-z_.]){re.escape(subject_id)}(?![0-9A-Za-z_.])")


def subject_masks(table: pa.Table, dataset: Dataset, subjects: Subjects) -> dict[str, np.ndarray]:
    """Per subject hash, the quarantine rows that belong to it: its typed value in a subject column
    (compared as the column's type, so `042` is 42 in an int64 column), or its id as a whole token
    of `_raw` (lines that could not be split into fields)."""
    n = table.num_rows
    columns = {c: (dataset.column(c).type, table[c].to_pylist()) for c in dataset.subject_columns
               if c in table.column_names}
    raw = table[RAW_COLUMN].to_pylist() if RAW_COLUMN in table.column_names else [None] * n
    out = {}
    for sid, h in zip(subjects.ids, subjects.hashes, strict=True):
        mask = np.zeros(n, dtype=bool)
        for ctype, values in columns.values():
            want = typed_value(sid, ctype)
            if want is not None:
                mask |= np.fromiter((v is not None and typed_value(v, ctype) == want for v in values), bool, n)
        token = _raw_token(sid)
        mask |= np.fromiter((r is not None and token.search(r) is not None for r in raw), bool, n)
        out[h] = mask
    return out


def quarantine_mask(table: pa.Table, dataset: Dataset, subjects: Subjects) -> np.ndarray:
    """Rows of a quarantine table that belong to any of the subjects."""
    mask = np.zeros(table.num_rows, dtype=bool)
    for m in subject_masks(table, dataset, subjects).values():
        mask |= m
    return mask


def quarantine_keys(bucket: str, dataset: str) -> list[str]:
    out = []
    for page in aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{dataset}/"):
        out += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".parquet")]
    return sorted(out)


def _lineage(table: pa.Table, into: dict[str, list[int]]) -> None:
    for oid, line in zip(table[OBJECT_COLUMN].to_pylist(), table[LINE_COLUMN].to_pylist(), strict=True):
        if oid is not None and line is not None:
            into.setdefault(oid, []).append(int(line))


def scan_quarantine(bucket: str, dataset: Dataset, subjects: Subjects) -> dict[str, Any]:
    """Rows of each subject left in the dataset's quarantine, and the files holding any (verification)."""
    fs = aws.s3_filesystem()
    by_subject: dict[str, int] = {}
    files, scanned, unreadable = [], 0, []
    for key in quarantine_keys(bucket, dataset.name):
        scanned += 1
        try:
            table = pq.read_table(f"{bucket}/{key}", filesystem=fs)
        except Exception as exc:  # reported: a file that cannot be read cannot be called clean
            unreadable.append(f"{key}: unreadable ({type(exc).__name__})")
            continue
        masks = subject_masks(table, dataset, subjects)
        for h, m in masks.items():
            if m.any():
                by_subject[h] = by_subject.get(h, 0) + int(m.sum())
        if any(m.any() for m in masks.values()):
            files.append(key)
    return {"by_subject": by_subject, "files_with_subjects": files, "files_scanned": scanned,
            "unreadable": unreadable}


class Memo:
    """Per-object progress a retry must not lose (the lake's Checkpoint, or a dict in tests)."""

    def load(self) -> dict[str, Any] | None:
        return None

    def save(self, data: dict[str, Any]) -> None:
        return None


def erase_quarantine(bucket: str, dataset: Dataset, subjects: Subjects, memo: Any = None) -> dict[str, Any]:
    """Remove the subjects' rows from every quarantine file of the dataset; returns what changed.

    What a file will lose (counts, lineage) is saved in `memo` before the file is changed, so a retry
    after a crash still reports those rows, and their raw lines are still blanked.
    """
    memo = memo or Memo()
    fs = aws.s3_filesystem()
    s3 = aws.client("s3")
    done: dict[str, dict[str, Any]] = dict((memo.load() or {}).get("files", {}))
    scanned = 0
    earlier = set(done)
    for key in quarantine_keys(bucket, dataset.name):
        scanned += 1
        table = pq.ParquetFile(f"{bucket}/{key}", filesystem=fs).read()
        masks = subject_masks(table, dataset, subjects)
        mask = np.zeros(table.num_rows, dtype=bool)
        for m in masks.values():
            mask |= m
        hit = int(mask.sum())
        if not hit:
            continue  # untouched, or changed by an earlier attempt (its entry is in `done`)
        lineage: dict[str, list[int]] = {}
        _lineage(table.filter(pa.array(mask)), lineage)
        kept = table.filter(pa.array(~mask))
        entry = {"key": key, "action": "rewritten" if kept.num_rows else "deleted", "rows_removed": hit,
                 "rows_left": kept.num_rows, "by_subject": {h: int(m.sum()) for h, m in masks.items() if m.any()},
                 "lineage": lineage, "versions_deleted": 0}
        done[key] = entry
        memo.save({"files": done})
        if kept.num_rows:
            sink = pa.BufferOutputStream()
            pq.write_table(kept, sink, compression="zstd")
            put = s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())
            entry["versions_deleted"] = purge_key(bucket, key, keep=put.get("VersionId"))
        else:
            entry["versions_deleted"] = purge_key(bucket, key)
        memo.save({"files": done})
        earlier.discard(key)
    for key in sorted(earlier):  # changed by an attempt that may have died before deleting old versions
        entry = done[key]
        current = None
        if entry["action"] == "rewritten":
            current = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
        entry["versions_deleted"] += purge_key(bucket, key, keep=current)
    lineage_all: dict[str, set[int]] = {}
    for f in done.values():
        for oid, lines in f["lineage"].items():
            lineage_all.setdefault(oid, set()).update(lines)
    files = [{k: v for k, v in f.items() if k != "lineage"} for f in done.values()]
    return {"dataset": dataset.name, "files_scanned": scanned, "files": files,
            "rows_removed": sum(f["rows_removed"] for f in files),
            "lineage": {oid: sorted(v) for oid, v in lineage_all.items()}}


# -- raw copies ------------------------------------------------------------------------------------
def _bom(text: bytes) -> int:
    return len(UTF8_BOM) if text.startswith(UTF8_BOM) else 0


def record_lines(text: bytes, lines: Iterable[int], dialect: records.Dialect = records.LINES) -> list[int]:
    """Every 1-based physical line of the records that start on `lines` (a CSV record may span lines)."""
    return sorted(records.record_lines(text, [ln for ln in lines if ln >= 1], dialect))


def blank_lines(text: bytes, lines: Iterable[int], dialect: records.Dialect = records.LINES) -> tuple[bytes, int]:
    """Text with every line of the records on the given 1-based lines emptied (terminators kept).

    Returns (new text, physical lines that changed). Records, not lines: blanking only the first line
    of a record whose quoted value spans lines would leave the rest of it, personal data included.
    """
    starts, ends = records.line_spans(text, _bom(text))
    wanted = [ln for ln in record_lines(text, lines, dialect) if ln <= len(starts)]
    cuts = [(int(starts[ln - 1]), int(ends[ln - 1])) for ln in wanted if ends[ln - 1] > starts[ln - 1]]
    if not cuts:
        return text, 0
    out, pos, last = [], 0, b""
    for s, e in cuts:
        out.append(text[pos:s])
        last = text[s - 1:s] if s > pos else last
        if last == b"\r" and text[e:e + 1] == b"\n":
            # a lone \r before an emptied line ending in \n would become one \r\n break: one line fewer
            # for every record after it. The emptied line ends in \r\n instead (still one break).
            out.append(b"\r\n")
            pos, last = e + 1, b"\n"
        else:
            pos = e
    out.append(text[pos:])
    return b"".join(out), len(cuts)


def lines_blank(text: bytes, lines: Iterable[int], dialect: records.Dialect = records.LINES) -> bool:
    """True when every line of the records on the given lines is empty (verification of a rewritten raw copy).

    On a correctly blanked copy each given line is an empty record of its own; pass every line the
    erasure blanked (its result's `lines_erased`) so that a record's tail left behind is caught too.
    """
    starts, ends = records.line_spans(text, _bom(text))
    return all(ln > len(starts) or ends[ln - 1] == starts[ln - 1] for ln in record_lines(text, lines, dialect))


def raw_keys(bucket: str, dataset: str, object_ids: Sequence[str]) -> dict[str, list[str]]:
    """Raw copies of each object id: keys under `<dataset>/received=*/<oid>/`."""
    s3 = aws.client("s3")
    days = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{dataset}/received=",
                                                             Delimiter="/"):
        days += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    out: dict[str, list[str]] = {oid: [] for oid in object_ids}
    for day in days:
        for oid in object_ids:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{day}{oid}/"):
                out[oid] += [o["Key"] for o in page.get("Contents", [])]
    return out


def _delete_landing(meta: dict[str, str], landing_bucket: str) -> bool:
    """Delete the landing original of a raw copy if it is still there (same ETag)."""
    if not landing_bucket or meta.get("etl-source-bucket") != landing_bucket or "etl-source-key" not in meta:
        return False
    s3 = aws.client("s3")
    key = unquote(meta["etl-source-key"])
    try:
        head = s3.head_object(Bucket=landing_bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    if head.get("ETag", "").strip('"') != meta.get("etl-source-etag", "").strip('"'):
        return False  # a newer object under the same key: not our copy
    for k, v in versions(landing_bucket, key, exact=True):
        s3.delete_object(Bucket=landing_bucket, Key=k, VersionId=v)
    return True


def erase_raw_object(
    bucket: str, key: str, lines: Sequence[int], dataset: Dataset, *, max_bytes: int, landing_bucket: str = "",
    memo: Any = None,
) -> dict[str, Any]:
    """Blank the lines in one raw copy (or delete it), then delete its older versions.

    `memo` keeps what was done before a crash (lines blanked, landing original deleted) so that the
    retry, which finds nothing left to do, still reports it.
    """
    memo = memo or Memo()
    saved = memo.load() or {}
    s3 = aws.client("s3")
    obj = s3.get_object(Bucket=bucket, Key=key)
    body = obj["Body"].read()
    meta = obj.get("Metadata", {})
    compressed = body[:2] == GZIP_MAGIC
    text = gzip.decompress(body) if compressed else body
    landing = _delete_landing(meta, landing_bucket) or bool(saved.get("landing_deleted"))
    origin = {"landing_key": unquote(meta["etl-source-key"]), "landing_etag": meta.get("etl-source-etag", "")} \
        if landing_bucket and meta.get("etl-source-bucket") == landing_bucket and "etl-source-key" in meta else {}
    if len(text) > max_bytes:
        deleted = purge_key(bucket, key)
        return {"key": key, "action": "deleted", "why": "larger than the rewrite limit", "lines": len(lines),
                "versions_deleted": deleted, "landing_deleted": landing, **origin}
    dialect = records.Dialect.of(dataset.format)
    # every physical line of the subject's records; a retry sees them already blank (each its own
    # record), so the first attempt's expansion is kept in the memo
    erased = sorted(set(saved.get("lines_erased", [])) | set(record_lines(text, lines, dialect)))
    new, changed = blank_lines(text, erased, dialect)
    keep = obj.get("VersionId")
    if changed:
        memo.save({"lines_blanked": changed, "landing_deleted": landing, "lines_erased": erased})
        data = gzip.compress(new, compresslevel=6, mtime=0) if compressed else new
        extra = {"ContentType": obj["ContentType"]} if obj.get("ContentType") else {}
        keep = s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata=meta, **extra).get("VersionId")
    else:
        changed = int(saved.get("lines_blanked", 0))
    deleted = purge_key(bucket, key, keep=keep)
    return {"key": key, "action": "rewritten" if changed else "unchanged", "lines": len(lines),
            "lines_blanked": changed, "lines_erased": erased, "versions_deleted": deleted,
            "landing_deleted": landing, **origin}


def raw_object_clean(bucket: str, key: str, lines: Sequence[int],
                     dialect: records.Dialect = records.LINES) -> str | None:
    """Verification: None if the copy is gone or holds only blank lines there with one version; else why not."""
    found = list(versions(bucket, key, exact=True))
    if not found:
        return None
    if len(found) > 1:
        return f"{len(found)} versions remain"
    body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    text = gzip.decompress(body) if body[:2] == GZIP_MAGIC else body
    return None if lines_blank(text, lines, dialect) else "erased lines are not blank"

