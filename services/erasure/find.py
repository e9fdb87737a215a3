"""FIND: which files (and row groups) of the lake may hold a subject, reading as little as possible.

Per file, cheapest test first, each one able only to rule a row group out, never in by mistake:
1. partition pruning — when a subject column is also an identity partition key (done by callers,
   see `partition_may_match`);
2. row-group statistics — min/max of each subject column from the footer (one ranged GET);
3. bloom filters — the split-block filter of each subject column chunk that survived 2 (one
   ranged GET each; no false negatives);
4. exact — the subject column chunks of the row groups that survived, tested for the values the
   bloom filter let through only (a value it rejects is certainly absent). A flat INT32/INT64 PLAIN
   chunk (the platform's integer subject columns) is decoded straight from its bytes with numpy
   (`pages.plain_fixed_values`, its count checked against the chunk's rows less its nulls); any other
   chunk is read with pyarrow and tested with `pyarrow.compute.is_in`.
Only step 4 says "matches"; a file whose candidates all test negative is never rewritten.

Per file of a day-partitioned lake (~180 KB, one row group) the fixed costs are what counts, so the
footer is parsed from the bytes in memory (`_footer`), the subjects' hashes and sorted values are made
once per run (`_probes_for`), and a few values are tested against a filter as Python ints, many with arrays.

A small file (≤ WHOLE_FILE_BYTES, a compacted day of a modest table is ~200 KB) is fetched whole in
one request: FIND is latency-bound on S3, and footer, bloom filter and subject column would
otherwise be two or three ranged GETs, each costing more in latency than the few hundred KB. The
probe then hands the bytes and the parsed footer to REWRITE (`FileProbe.data`, `.metadata`), which
reads the file from memory instead of fetching and parsing it again.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts.datasets import Dataset
from services.erasure.blobs import Blob, BlobFile, CachedBlob, ReadStats
from services.erasure.bloom import BloomFormatError, BloomProbe, SplitBlockBloom, parse_header, plain_bytes, xxh64
from services.erasure.pages import PageFormatError, chunk_span, footer_bytes, plain_fixed_values, thrift_codec
from services.erasure.subjects import ColumnValues

try:  # pyarrow's FileMetaData un-pickler: a footer parsed from bytes in memory (see `_footer`)
    from pyarrow._parquet import _reconstruct_filemetadata
except ImportError:  # pragma: no cover - another pyarrow: read_metadata does the same, slower
    _reconstruct_filemetadata = None

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


def _in_range(values: list, stats: pq.Statistics | None, ordered: tuple[list, list[int]] | None = None) -> list[int]:
    """Positions of `values` inside the chunk's [min, max] (all of them when there are no statistics).

    `ordered` is the values sorted with their positions (`_Probes.ordered`): two bisections then instead
    of a comparison per value."""
    if stats is None or not stats.has_min_max:
        return list(range(len(values)))
    lo, hi = stats.min, stats.max
    if ordered is not None:
        keys, order = ordered
        try:
            return order[bisect_left(keys, lo) : bisect_right(keys, hi)]
        except TypeError:  # statistics of another type than the values: compare one by one below
            pass
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
    read = getattr(blob, "view", blob.read)  # a CachedBlob's bytes in place
    length = chunk.bloom_filter_length
    if length and length > 0:
        return SplitBlockBloom.from_bytes(read(offset, length))
    head = read(offset, BLOOM_HEADER_GUESS)
    num_bytes, header = parse_header(head)
    return SplitBlockBloom.from_bytes(bytes(head[:header]) + read(offset + header, num_bytes))


class _Probes:
    """Each subject column's values as Python objects and their bloom hashes per physical type, made
    once per run of files rather than once per file, row group and value (100 subjects, thousands of
    day files: hashing them per file cost more than testing the filter)."""

    def __init__(self, columns: Sequence[ColumnValues]) -> None:
        self.columns = tuple(columns)  # the (frozen) objects these were made from, held: ids stay theirs
        self.ids = tuple(map(id, self.columns))
        self.values = {cv.column: cv.values.to_pylist() for cv in columns}
        self.ordered: dict[str, tuple[list, list[int]] | None] = {}
        for column, values in self.values.items():
            try:
                pairs = sorted((v, i) for i, v in enumerate(values))
            except TypeError:  # values that do not compare (never for one typed column): no bisection
                self.ordered[column] = None
                continue
            self.ordered[column] = ([v for v, _ in pairs], [i for _, i in pairs])
        self._hashes: dict[tuple[str, str], BloomProbe] = {}
        #: per entry of `columns`, `is_in`'s options (the value set converted once) and each value's subjects
        self.lookup = [pc.SetLookupOptions(cv.values) for cv in columns]
        self.index_of: list[dict[object, list[int]]] = []
        for cv in columns:
            index_of: dict[object, list[int]] = {}
            for v, i in zip(cv.values.to_pylist(), cv.subject_index, strict=True):
                index_of.setdefault(v, []).append(i)
            self.index_of.append(index_of)

    def hashes(self, column: str, physical_type: str) -> BloomProbe:
        key = (column, physical_type)
        found = self._hashes.get(key)
        if found is None:
            found = BloomProbe.of([xxh64(plain_bytes(v, physical_type)) for v in self.values[column]])
            self._hashes[key] = found
        return found


_LAST_PROBES: list[_Probes] = []


def _probes_for(columns: Sequence[ColumnValues]) -> _Probes:
    """The prepared values of `columns`, kept for the next call with the same ColumnValues objects (a
    run probes every file with one `columns`; they are frozen, and held, so identity is equality)."""
    last = _LAST_PROBES[0] if _LAST_PROBES else None
    if last is not None and last.ids == tuple(map(id, columns)):  # held by `last`: no id was reused
        return last
    made = _Probes(columns)
    _LAST_PROBES[:] = [made]
    return made


#: each subject column's leaf position in the last file whose leaves were looked up: files of one dataset
#: share their schema, so the next file's is checked at that position first (see `_leaves`)
_LEAF_AT: dict[str, int] = {}


def _leaves(md: pq.FileMetaData, columns: Sequence[ColumnValues]) -> dict[str, int]:
    """Column chunk position of each subject column present in the file (a flat column: its leaf's path
    is its name; a nested leaf of the same name is not it).

    The position found in the previous file is tried first, by the path of that column chunk: that
    does not build the footer's schema, whose Python object holds a reference cycle (the footer could
    then be freed only by the cyclic collector, ~10 µs a file on a day-partitioned lake)."""
    out = {}
    if md.num_row_groups:
        rg = md.row_group(0)
        for cv in columns:
            at = _LEAF_AT.get(cv.column)
            if at is not None and at < md.num_columns and rg.column(at).path_in_schema == cv.column:
                out[cv.column] = at
        if len(out) == len({cv.column for cv in columns}):
            return out
    schema = pq.ParquetSchema(md)  # not `md.schema`, which the footer keeps (the cycle)
    names = schema.names
    for cv in columns:
        if cv.column in out or cv.column not in names:
            continue
        at = names.index(cv.column)
        if schema.column(at).path != cv.column:  # a nested leaf named alike comes first: look by path
            paths = [schema.column(i).path for i in range(md.num_columns)]
            if cv.column not in paths:
                continue
            at = paths.index(cv.column)
        out[cv.column] = _LEAF_AT[cv.column] = at
    return out


def _footer(data: bytes) -> pq.FileMetaData:
    """The footer of a file held whole, parsed from its bytes by pyarrow's own deserializer (the one its
    FileMetaData pickling uses): no reader and no Arrow schema built, ~20 µs against ~35 µs for
    `read_metadata`, which a day-partitioned lake pays thousands of times."""
    try:
        raw = footer_bytes(data)
    except PageFormatError:
        return pq.read_metadata(pa.BufferReader(data))  # not a plain Parquet footer: pyarrow says what it is
    if _reconstruct_filemetadata is None:
        return pq.read_metadata(pa.BufferReader(data))
    return _reconstruct_filemetadata(pa.py_buffer(raw))


def _candidates(
    blob: Blob, md: pq.FileMetaData, leaves: Mapping[str, int], columns: Sequence[ColumnValues], probes: _Probes,
    stats: FindStats,
) -> dict[int, dict[int, list[int]]]:
    """Row groups that statistics and bloom filters cannot rule out, each with, per subject column (its
    position in `columns`), the positions of the values they cannot rule out: a value a filter rejects
    is certainly absent from that row group, so the exact test looks for the others only."""
    keep: dict[int, dict[int, list[int]]] = {}
    for r in range(md.num_row_groups):
        rg = md.row_group(r)
        stats.row_groups += 1
        if rg.num_rows == 0:
            continue
        survived_stats = False
        survivors: dict[int, list[int]] = {}
        for k, cv in enumerate(columns):
            at = leaves.get(cv.column)
            if at is None:
                continue
            chunk = rg.column(at)
            inside = _in_range(probes.values[cv.column], chunk.statistics if chunk.is_stats_set else None,
                               probes.ordered[cv.column])
            if not inside:
                continue
            survived_stats = True
            try:
                bloom = read_bloom(blob, chunk)
            except BloomFormatError:
                bloom = None  # unreadable filter: fall through to the exact test
            if bloom is not None:
                stats.bloom_filters_read += 1
                inside = bloom.passing(probes.hashes(cv.column, chunk.physical_type), inside)
                if not inside:
                    continue
            survivors[k] = inside
        if not survived_stats:
            stats.row_groups_pruned_by_stats += 1
        elif not survivors:
            stats.row_groups_pruned_by_bloom += 1
        else:
            keep[r] = survivors
    return keep


#: annotations under which an INT32/INT64 column's stored value is the subject column's value itself
_SIGNED_INTS = {"NONE", "INT_8", "INT_16", "INT_32", "INT_64"}


def _exact_from_bytes(
    blob: Blob, md: pq.FileMetaData, r: int, at: int, cv: ColumnValues, positions: Sequence[int], probes: _Probes
) -> tuple[int, dict[int, int]] | None:
    """(rows matched, rows per subject index) of one row group whose only candidate column is `cv`,
    counted on the chunk's values decoded from its bytes (`pages.plain_fixed_values`: a flat INT32/INT64
    PLAIN chunk, the platform's integer subject columns); None when that does not apply (read with pyarrow).

    Only the values at `positions` (those statistics and bloom filter left) can be present. The decoded
    count must be the chunk's rows less its nulls, else the bytes are not what was assumed: None."""
    chunk = md.row_group(r).column(at)
    column = pq.ParquetSchema(md).column(at)  # not `md.schema`: see `_leaves`
    if column.converted_type not in _SIGNED_INTS:  # a decimal's unscaled value, a date, an unsigned int: pyarrow
        return None
    if column.max_definition_level == 0:
        nulls = 0
    elif chunk.is_stats_set and chunk.statistics.has_null_count:
        nulls = chunk.statistics.null_count
    else:
        return None
    start, length = chunk_span(chunk)
    try:
        read = getattr(blob, "view", blob.read)  # a CachedBlob's bytes in place: the pages are sliced, not copied
        values = plain_fixed_values(read(start, length), thrift_codec(chunk), chunk.physical_type,
                                    column.max_definition_level, column.max_repetition_level)
    except (PageFormatError, pa.ArrowException):
        return None
    if values is None or len(values) != chunk.num_values - nulls:
        return None
    wanted = probes.values[cv.column]
    counts: dict[int | str, int] = {}
    by_subject: dict[int, int] = {}
    for p in positions:
        v = wanted[p]
        if v not in counts:
            counts[v] = int(np.count_nonzero(values == v))
        if counts[v]:
            i = cv.subject_index[p]
            by_subject[i] = by_subject.get(i, 0) + counts[v]
    return sum(counts.values()), by_subject


def match_mask(table: pa.Table, columns: Sequence[ColumnValues]) -> pa.ChunkedArray | pa.Array | None:
    """Rows of `table` holding any subject value in any subject column (None: no subject column present)."""
    mask = None
    names = table.column_names
    lookup = _probes_for(columns).lookup
    for k, cv in enumerate(columns):
        if cv.column not in names:
            continue
        hit = pc.is_in(table[cv.column], options=lookup[k])
        mask = hit if mask is None else pc.or_(mask, hit)
    return mask


#: up to this many rows (the removed rows of a file, usually), subjects are counted in Python
COUNT_IN_PYTHON = 1000


def count_by_subject(table: pa.Table, columns: Sequence[ColumnValues]) -> dict[int, int]:
    """Matched rows per subject index (a row matched through two subjects counts for both)."""
    out: dict[int, int] = {}
    names = table.column_names
    probes = _probes_for(columns)
    for k, cv in enumerate(columns):
        if cv.column not in names:
            continue
        index_of = probes.index_of[k]
        col = table[cv.column]
        if table.num_rows <= COUNT_IN_PYTHON:  # a few rows: no hash table, filter and value counts to build
            counted: dict[object, int] = {}
            for v in col.to_pylist():
                if v in index_of:
                    counted[v] = counted.get(v, 0) + 1
            pairs = list(counted.items())
        else:
            hits = col.filter(pc.is_in(col, options=probes.lookup[k]))
            if len(hits) == 0:
                continue
            pairs = [(e["values"], int(e["counts"])) for e in pc.value_counts(hits).to_pylist()]
        for v, n in pairs:
            for i in index_of.get(v, []):
                out[i] = out.get(i, 0) + n
    return out


def probe(blob: Blob, columns: Sequence[ColumnValues], *, exact: bool = True) -> FileProbe:
    """Probe one Parquet file for the subjects; with `exact=False` stop after bloom filters."""
    result = FileProbe()
    s = result.stats
    s.files_considered = 1
    if not columns:
        return result
    counted = getattr(blob, "stats", None) or ReadStats()
    bytes_before, requests_before = counted.bytes, counted.requests
    blob = CachedBlob(blob)
    data = blob.read(0, blob.size) if blob.size <= WHOLE_FILE_BYTES else None
    md = pq.read_metadata(BlobFile(blob)) if data is None else _footer(data)
    s.footers_read = 1
    leaves = _leaves(md, columns)
    probes = _probes_for(columns)
    candidates = _candidates(blob, md, leaves, columns, probes, s)
    if candidates and exact:
        s.files_scanned = 1
        s.row_groups_scanned = len(candidates)
        pf: pq.ParquetFile | None = None
        matched_groups = []
        for r, survivors in candidates.items():
            counted_rows = None
            if len(survivors) == 1:
                (k, positions), = survivors.items()
                counted_rows = _exact_from_bytes(blob, md, r, leaves[columns[k].column], columns[k], positions,
                                                 probes)
            if counted_rows is None:  # read the subject columns with pyarrow, test every value
                if pf is None:
                    pf = pq.ParquetFile(BlobFile(blob) if data is None else pa.BufferReader(data), metadata=md,
                                        pre_buffer=False)
                t = pf.read_row_group(r, columns=[cv.column for cv in columns if cv.column in leaves],
                                      use_threads=False)
                mask = match_mask(t, columns)
                n = int(pc.sum(mask).as_py() or 0) if mask is not None else 0
                counted_rows = (n, count_by_subject(t, columns) if n else {})
            n, by_subject = counted_rows
            if n:
                matched_groups.append(r)
                result.matched_rows += n
                for i, c in by_subject.items():
                    result.by_subject[i] = result.by_subject.get(i, 0) + c
        result.matched_row_groups = tuple(matched_groups)
        s.files_matched = int(result.matched_rows > 0)
    elif candidates:
        result.matched_row_groups = tuple(candidates)
    if result.matched_row_groups:
        result.metadata, result.data = md, data
    s.bytes_read = counted.bytes - bytes_before
    s.requests = counted.requests - requests_before
    return result
