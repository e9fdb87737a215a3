"""FIND: which files (and row groups) of the lake may hold a subject, reading as little as possible.

Per file, cheapest test first, each one able only to rule a row group out, never in by mistake:
1. partition pruning — when a subject column is also an identity partition key (done by callers,
   see `partition_may_match`);
2. row-group statistics — min/max of each subject column from the footer (one ranged GET);
3. bloom filters — the split-block filter of each subject column chunk that survived 2 (one
   ranged GET each; no false negatives);
4. exact — the subject column chunks of the row groups that survived, read and tested with
   `pyarrow.compute.is_in`.
Only step 4 says "matches"; a file whose candidates all test negative is never rewritten.

A small file (≤ WHOLE_FILE_BYTES, a compacted day of a modest table is ~200 KB) is fetched whole in
one request: FIND is latency-bound on S3, and footer, bloom filter and subject column would
otherwise be two or three ranged GETs, each costing more in latency than the few hundred KB. The
probe then hands the bytes and the parsed footer to REWRITE (`FileProbe.data`, `.metadata`), which
reads the file from memory instead of fetching and parsing it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts.datasets import Dataset
from services.erasure.blobs import Blob, BlobFile, CachedBlob, ReadStats
from services.erasure.bloom import BloomFormatError, SplitBlockBloom, parse_header, plain_bytes, xxh64
from services.erasure.subjects import ColumnValues

#: bytes fetched when a footer entry does not record the bloom filter's length (header + bitset follow)
BLOOM_HEADER_GUESS = 64
#: files up to this size are fetched whole in one request (see the module's docstring): on S3 a GET's
#: latency (~20-50 ms) outweighs transferring 1 MiB, and a probe needs two or three ranged GETs otherwise
WHOLE_FILE_BYTES = 1 << 20


@dataclass
class FindStats:
    """What a FIND pass cost and decided; summed over files and partitions for the certificate."""

    files_considered: int = 0
    footers_read: int = 0
    bloom_filters_read: int = 0
    files_scanned: int = 0  # subject column data read
    files_matched: int = 0
    row_groups: int = 0
    row_groups_pruned_by_stats: int = 0
    row_groups_pruned_by_bloom: int = 0
    row_groups_scanned: int = 0
    bytes_read: int = 0
    requests: int = 0

    def add(self, other: FindStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> FindStats:
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class FileProbe:
    """One file's verdict: matched rows in total and per subject index, and what it took to know."""

    matched_rows: int = 0
    by_subject: dict[int, int] = field(default_factory=dict)
    matched_row_groups: tuple[int, ...] = ()
    stats: FindStats = field(default_factory=FindStats)
    #: the footer FIND parsed, and the whole file when FIND fetched it whole: REWRITE reuses both
    #: (set only for matched files, the ones rewritten)
    metadata: pq.FileMetaData | None = field(default=None, repr=False)
    data: bytes | None = field(default=None, repr=False)

    @property
    def matched(self) -> bool:
        return self.matched_rows > 0

    def source(self) -> Any:
        """The file as FIND read it, for REWRITE: in memory when fetched whole, else None (read it again)."""
        return None if self.data is None else pa.BufferReader(self.data)


def partition_may_match(dataset: Dataset, values: Mapping[str, str], columns: Sequence[ColumnValues]) -> bool:
    """False only when every subject column is an identity partition key whose value is no subject's."""
    identity = {p.source: p.name for p in dataset.partitioning if p.transform == "identity"}
    wanted = {cv.column: {str(v) for v in cv.values.to_pylist()} for cv in columns}
    for column in dataset.subject_columns:
        key = identity.get(column)
        if key is None or values.get(key) in wanted.get(column, set()):
            return True
    return False


def _in_range(values: list, stats: pq.Statistics | None) -> list[int]:
    """Positions of `values` inside the chunk's [min, max] (all of them when there are no statistics)."""
    if stats is None or not stats.has_min_max:
        return list(range(len(values)))
    lo, hi = stats.min, stats.max
    kept = []
    for i, v in enumerate(values):
        try:
            if lo <= v <= hi:
                kept.append(i)
        except TypeError:  # statistics of an unexpected logical type: cannot rule anything out
            kept.append(i)
    return kept


def read_bloom(blob: Blob, chunk: pq.ColumnChunkMetaData) -> SplitBlockBloom | None:
    offset = chunk.bloom_filter_offset
    if not offset or offset < 0:
        return None
    length = chunk.bloom_filter_length
    if length and length > 0:
        return SplitBlockBloom.from_bytes(blob.read(offset, length))
    head = blob.read(offset, BLOOM_HEADER_GUESS)
    num_bytes, header = parse_header(head)
    return SplitBlockBloom.from_bytes(head[:header] + blob.read(offset + header, num_bytes))


class _Probes:
    """Each subject column's values as Python objects and their bloom hashes per physical type, made
    once per file rather than once per row group and value (100 subjects, many row groups)."""

    def __init__(self, columns: Sequence[ColumnValues]) -> None:
        self.values = {cv.column: cv.values.to_pylist() for cv in columns}
        self._hashes: dict[tuple[str, str], list[int]] = {}

    def hashes(self, column: str, physical_type: str) -> list[int]:
        key = (column, physical_type)
        if key not in self._hashes:
            self._hashes[key] = [xxh64(plain_bytes(v, physical_type)) for v in self.values[column]]
        return self._hashes[key]


def _candidates(
    blob: Blob, md: pq.FileMetaData, names: list[str], columns: Sequence[ColumnValues], stats: FindStats
) -> list[int]:
    """Row groups that statistics and bloom filters cannot rule out."""
    keep = []
    probes = _Probes(columns)
    for r in range(md.num_row_groups):
        rg = md.row_group(r)
        stats.row_groups += 1
        if rg.num_rows == 0:
            continue
        survived_stats = survived_bloom = False
        for cv in columns:
            if cv.column not in names:
                continue
            chunk = rg.column(names.index(cv.column))
            inside = _in_range(probes.values[cv.column], chunk.statistics if chunk.is_stats_set else None)
            if not inside:
                continue
            survived_stats = True
            try:
                bloom = read_bloom(blob, chunk)
            except BloomFormatError:
                bloom = None  # unreadable filter: fall through to the exact test
            if bloom is not None:
                stats.bloom_filters_read += 1
                hashes = probes.hashes(cv.column, chunk.physical_type)
                if not any(bloom.might_contain(hashes[i]) for i in inside):
                    continue
            survived_bloom = True
            break
        if not survived_stats:
            stats.row_groups_pruned_by_stats += 1
        elif not survived_bloom:
            stats.row_groups_pruned_by_bloom += 1
        else:
            keep.append(r)
    return keep


def match_mask(table: pa.Table, columns: Sequence[ColumnValues]) -> pa.ChunkedArray | pa.Array | None:
    """Rows of `table` holding any subject value in any subject column (None: no subject column present)."""
    mask = None
    for cv in columns:
        if cv.column not in table.column_names:
            continue
        hit = pc.is_in(table[cv.column], value_set=cv.values)
        mask = hit if mask is None else pc.or_(mask, hit)
    return mask


def count_by_subject(table: pa.Table, columns: Sequence[ColumnValues]) -> dict[int, int]:
    """Matched rows per subject index (a row matched through two subjects counts for both)."""
    out: dict[int, int] = {}
    for cv in columns:
        if cv.column not in table.column_names:
            continue
        col = table[cv.column]
        hits = col.filter(pc.is_in(col, value_set=cv.values))
        if len(hits) == 0:
            continue
        counts = pc.value_counts(hits)
        index_of: dict[object, list[int]] = {}
        for v, i in zip(cv.values.to_pylist(), cv.subject_index, strict=True):
            index_of.setdefault(v, []).append(i)
        for entry in counts.to_pylist():
            for i in index_of.get(entry["values"], []):
                out[i] = out.get(i, 0) + entry["counts"]
    return out


def probe(blob: Blob, columns: Sequence[ColumnValues], *, exact: bool = True) -> FileProbe:
    """Probe one Parquet file for the subjects; with `exact=False` stop after bloom filters."""
    result = FileProbe()
    s = result.stats
    s.files_considered = 1
    if not columns:
        return result
    counted = getattr(blob, "stats", ReadStats())
    before = ReadStats(counted.bytes, counted.requests)
    blob = CachedBlob(blob)
    data = blob.read(0, blob.size) if blob.size <= WHOLE_FILE_BYTES else None
    pf = pq.ParquetFile(BlobFile(blob) if data is None else pa.BufferReader(data), pre_buffer=False)
    s.footers_read = 1
    md = pf.metadata
    names = pf.schema_arrow.names
    candidates = _candidates(blob, md, names, columns, s)
    if candidates and exact:
        wanted = [cv.column for cv in columns if cv.column in names]
        s.files_scanned = 1
        s.row_groups_scanned = len(candidates)
        matched_groups = []
        for r in candidates:
            t = pf.read_row_group(r, columns=wanted)
            mask = match_mask(t, columns)
            n = int(pc.sum(mask).as_py() or 0) if mask is not None else 0
            if n:
                matched_groups.append(r)
                result.matched_rows += n
                for i, c in count_by_subject(t, columns).items():
                    result.by_subject[i] = result.by_subject.get(i, 0) + c
        result.matched_row_groups = tuple(matched_groups)
        s.files_matched = int(result.matched_rows > 0)
    elif candidates:
        result.matched_row_groups = tuple(candidates)
    if result.matched_row_groups:
        result.metadata, result.data = md, data
    s.bytes_read = counted.bytes - before.bytes
    s.requests = counted.requests - before.requests
    return result
