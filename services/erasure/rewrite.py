"""REWRITE: a Parquet file without the subjects' rows, streamed row group by row group.

The new file keeps what readers rely on, taken from the old file's own footer: schema, codec per
column, dictionary and delta encodings, statistics, page index, bloom filters on the same columns,
`sorting_columns`, decimal storage, and the row-group boundaries (each old row group becomes one
new row group, minus the erased rows, so sort order and group sizes stay as compaction left them).
Rows are found with `pyarrow.compute.is_in` (vectorised) and cut out (`without_rows`). Memory holds one
row group at a time.

A big file (a row group of at least `splice.MIN_ROWS` rows) is first offered to splice.py, which copies
every page holding no removed row undecoded and re-encodes only the others; it declines (and this
module rewrites the file whole) when most of the bytes would be re-encoded anyway or when it cannot
rebuild something exactly.

Everything the writer derives from values is derived from the rows left: a dictionary column holding
an entry no row of its row group uses is re-encoded (a filtered dictionary array keeps its whole
dictionary, and the writer would store an erased row's value in the dictionary page; a row group that
lost no row may also carry an enum's unused domain, or values a writer shared across row groups), and
statistics, page index and bloom filters are computed by the writer from what it writes. structure.py
checks the bytes.

The footer's key-value metadata is kept (but `ARROW:schema`, which the writer makes from the schema):
it records the contract the file was written with (`etl.contract.*`, contracts/schema_evolution.py),
which schema evolution reads back; structure.py still checks every other key for subject ids.

Not recorded in Parquet, so taken from the lake's file format (contracts/lake_format.py, which transform
and compaction write with): the zstd level, ZSTD_LEVEL for every column (free text is
DELTA_LENGTH_BYTE_ARRAY, the encoding is read from the file); bloom filters sized for the row group's rows
at BLOOM_FPP.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts.lake_format import BLOOM_FPP, ZSTD_LEVEL
from contracts.lineage import LINE_COLUMN, OBJECT_COLUMN
from contracts.parquet_codecs import BY_REPORTED
from services.erasure import splice
from services.erasure.blobs import BlockReader
from services.erasure.find import count_by_subject, match_mask
from services.erasure.fingerprints import fingerprints
from services.erasure.subjects import ColumnValues

_log = logging.getLogger(__name__)
#: footer keys the writer makes itself (from the schema), never copied from the source
_WRITER_KEYS = {b"ARROW:schema"}
#: ParquetWriter codec per codec name as pyarrow reports it (one it cannot write is written as zstd)
_CODECS = {name: c.writer for name, c in BY_REPORTED.items()}
_DICTIONARY = {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
_COLUMN_ENCODINGS = ("DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY", "BYTE_STREAM_SPLIT")


@dataclass
class RewriteResult:
    rows_in: int = 0
    rows_removed: int = 0
    by_subject: dict[int, int] = field(default_factory=dict)
    lineage: dict[str, list[int]] = field(default_factory=dict)  # object id -> removed line numbers
    row_groups_in: int = 0
    row_groups_out: int = 0
    fingerprints: set[str] = field(default_factory=set)  # of the removed rows' other personal values
    bytes_copied: int = 0  # of the file written, bytes copied from the source undecoded (splice.py)
    whole_because: str = ""  # why the file was not spliced (column names and shares only: no values)

    @property
    def rows_out(self) -> int:
        return self.rows_in - self.rows_removed


def writer_options(pf: pq.ParquetFile) -> dict[str, Any]:
    """ParquetWriter keyword arguments that reproduce the file's physical layout."""
    return options_of(pf.metadata, pf.schema_arrow)


class _Chunk(NamedTuple):
    """What the writer options need of one column chunk, read once (pyarrow converts on every access)."""

    name: str
    compression: str
    encodings: set[str]
    has_stats: bool
    has_column_index: bool
    has_bloom: bool
    physical_type: str

    @classmethod
    def of(cls, name: str, c: pq.ColumnChunkMetaData) -> _Chunk:
        return cls(name, c.compression, set(c.encodings), c.is_stats_set, c.has_column_index,
                   bool(c.bloom_filter_offset), c.physical_type)


def options_of(md: pq.FileMetaData, schema: pa.Schema) -> dict[str, Any]:
    """`writer_options` from a parsed footer and its Arrow schema (each chunk's metadata read once: the
    properties are converted on every access, and a day's file is rewritten in a few milliseconds)."""
    names = schema.names
    if md.num_row_groups == 0:
        return {"compression": "zstd"}
    rg = md.row_group(0)
    chunks = [_Chunk.of(names[i], rg.column(i)) for i in range(rg.num_columns)]
    codecs = {c.name: _CODECS.get(c.compression, "zstd") for c in chunks}
    dictionary = [c.name for c in chunks if _DICTIONARY & c.encodings]
    encodings = {}
    for c in chunks:
        special = [e for e in _COLUMN_ENCODINGS if e in c.encodings]
        if special and c.name not in dictionary:
            encodings[c.name] = special[0]
    levels = {n: ZSTD_LEVEL for n, codec in codecs.items() if codec == "zstd"}
    max_rows = max(md.row_group(i).num_rows for i in range(md.num_row_groups))
    bloom = {c.name: {"ndv": max(1, max_rows), "fpp": BLOOM_FPP} for c in chunks if c.has_bloom}
    decimals_as_int = any(
        c.physical_type in ("INT32", "INT64") and pa.types.is_decimal(schema.field(c.name).type) for c in chunks
    )
    stored_schema = bool(md.metadata and b"ARROW:schema" in md.metadata)
    return {
        "compression": codecs,
        "compression_level": levels or None,
        "use_dictionary": dictionary,
        "column_encoding": encodings or None,
        "write_statistics": [c.name for c in chunks if c.has_stats],
        "write_page_index": any(c.has_column_index for c in chunks),
        "bloom_filter_options": bloom or None,
        "sorting_columns": rg.sorting_columns or None,
        "store_decimal_as_integer": decimals_as_int,
        "store_schema": stored_schema,
        "version": md.format_version if md.format_version in ("1.0", "2.4", "2.6") else "2.6",
    }


def footer_metadata(pf: pq.ParquetFile | pq.FileMetaData) -> dict[bytes, bytes]:
    """The source footer's key-value metadata to write again (the contract version, `etl.contract.*`)."""
    md = pf if isinstance(pf, pq.FileMetaData) else pf.metadata
    return {k: v for k, v in (md.metadata or {}).items() if k not in _WRITER_KEYS}


def dictionary_passthrough(pf: Any, options: dict[str, Any], columns: Sequence[ColumnValues]) -> list[str]:
    """Dictionary-encoded columns to read as Arrow dictionaries and write back as they are.

    The Parquet bytes are the same (the writer takes the dictionary instead of rebuilding it), so
    only when the file stores no Arrow schema (it would then record dictionary types) and not for
    subject columns (they are matched with is_in on plain values).
    """
    if options.get("store_schema"):
        return []
    subject = {cv.column for cv in columns}
    return [c for c in options.get("use_dictionary") or [] if c not in subject and "." not in c]


def _lineage(removed: pa.Table, into: dict[str, list[int]]) -> None:
    if OBJECT_COLUMN not in removed.column_names or LINE_COLUMN not in removed.column_names:
        return
    for oid, line in zip(removed[OBJECT_COLUMN].to_pylist(), removed[LINE_COLUMN].to_pylist(), strict=True):
        if oid is not None and line is not None:
            into.setdefault(oid, []).append(int(line))


#: up to this many removed rows in a row group, the rows left are cut out as slices and joined in one copy
#: (~2x cheaper than a filter: a day's file ~0.1 ms against ~0.25, a month's ~1.6 ms against ~3.5); past a few
#: hundred slices per column the filter is cheaper
SLICE_FROM_FEW = 100


def without_rows(t: pa.Table, positions: pa.Array, mask: pa.ChunkedArray | pa.Array) -> pa.Table:
    """`t` less the rows at `positions` (ascending; `mask` marks the same rows), one chunk per column.

    A few rows are cut out as zero-copy slices joined by one `combine_chunks` (contiguous columns:
    the writer is fed as from a filter; a chunked table made it slower); many rows with a filter."""
    if len(positions) > SLICE_FROM_FEW:
        return t.filter(pc.invert(mask))
    parts, start = [], 0
    for p in positions.to_pylist():
        if p > start:
            parts.append(t.slice(start, p - start))
        start = p + 1
    if start < t.num_rows:
        parts.append(t.slice(start))
    if not parts:
        return t.slice(0, 0)
    return pa.concat_tables(parts).combine_chunks()


def _drop_matches(t: pa.Table, columns: Sequence[ColumnValues], result: RewriteResult,
                  personal: Sequence[str] = (), salt: bytes = b"") -> pa.Table:
    """The rows that stay (one vectorised test of the subject columns, then `without_rows`)."""
    found = _note_removed(t, columns, result, personal, salt)
    return t if found is None else without_rows(t, *found)


def _note_removed(t: pa.Table, columns: Sequence[ColumnValues], result: RewriteResult, personal: Sequence[str],
                  salt: bytes, mask: pa.ChunkedArray | pa.Array | None = None,
                  ) -> tuple[pa.Array, pa.ChunkedArray | pa.Array] | None:
    """The positions and mask of the rows of `t` to remove (None: none), recorded in `result` (`mask`:
    the subject test's, when the caller made it)."""
    mask = match_mask(t, columns) if mask is None else mask
    if mask is None:
        return None
    positions = pc.indices_nonzero(mask)
    if len(positions) == 0:
        return None
    # only what is recorded of the removed rows: subject, lineage and personal columns (not the whole row)
    recorded = {cv.column for cv in columns} | {OBJECT_COLUMN, LINE_COLUMN} | set(personal)
    removed = t.select([i for i, c in enumerate(t.column_names) if c in recorded]).take(positions)
    result.rows_removed += removed.num_rows
    for i, c in count_by_subject(removed, columns).items():
        result.by_subject[i] = result.by_subject.get(i, 0) + c
    _lineage(removed, result.lineage)
    if personal:
        result.fingerprints.update(f for f in fingerprints(removed, personal, salt) if f)
    return positions, mask


def compact_dictionaries(t: pa.Table) -> pa.Table:
    """Dictionary columns re-encoded from the rows left: a filtered dictionary array keeps its whole
    dictionary, and the writer would store every entry (an erased row's name) in the dictionary page.

    A column whose every dictionary entry is still used by a row left is kept as it is (its
    dictionary holds only values of rows that stay: what re-encoding would give, in another order);
    that is the common case (an order status, a date) and costs one count of the indices (none for a
    one-entry dictionary: used as long as a row left is not null).
    """
    for i, f in enumerate(t.schema):
        if pa.types.is_dictionary(f.type):
            col = t.column(i)
            arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
            entries = len(arr.dictionary)
            indices = arr.indices
            if indices.null_count:
                indices = indices.drop_null()
            if entries <= 1:
                all_used = len(indices) >= entries
            else:
                all_used = np.count_nonzero(np.bincount(indices.to_numpy(), minlength=entries)) == entries
            if all_used:
                continue
            t = t.set_column(i, f, pc.dictionary_encode(arr.dictionary_decode()).cast(f.type))
    return t


def _close(sink: Any) -> None:
    if sink is not None and hasattr(sink, "close") and not getattr(sink, "closed", False):
        sink.close()


def rewrite(
    source: Any,
    open_sink: Callable[[], Any],
    columns: Sequence[ColumnValues],
    *,
    row_groups: Sequence[int] | None = None,
    metadata: pq.FileMetaData | None = None,
    personal: Sequence[str] = (),
    salt: bytes = b"",
) -> RewriteResult:
    """Copy `source` to the sink `open_sink()` returns, without rows matching `columns`.

    The sink is opened only when a row survives: a file left with no rows produces no file (the
    caller removes it from the partition). `row_groups`, when given, names the only row groups that
    can match (from FIND); the others are copied without testing. `metadata` is the source's footer
    when FIND already parsed it (`FileProbe.metadata`; not fetched and parsed again). `personal`
    names the columns whose values of each removed row are fingerprinted with `salt` (see fingerprints.py).
    """
    source = _held(source)
    md = metadata if metadata is not None else pq.read_metadata(source)
    options = options_of(md, md.schema.to_arrow_schema())
    spliced = _spliced(source, md, options, columns, row_groups, open_sink, personal, salt)
    if isinstance(spliced, RewriteResult):
        return spliced
    result = RewriteResult(whole_because=spliced)
    kept_metadata = footer_metadata(md)
    # dictionary columns decoded to dictionary arrays: the writer reuses them (half the work)
    passthrough = dictionary_passthrough(None, options, columns)
    # pre-buffering coalesces a remote file's reads; for bytes in memory it is only a detour (~5% of a day's read)
    pf = pq.ParquetFile(source, metadata=md, read_dictionary=passthrough or None,
                        pre_buffer=not isinstance(source, pa.BufferReader))
    schema = pf.schema_arrow
    may_match = None if row_groups is None else set(row_groups)
    writer: pq.ParquetWriter | None = None
    sink = None
    try:
        for r in range(pf.metadata.num_row_groups):
            t = pf.read_row_group(r, use_threads=False)  # one row group of one file: no pool hand-offs
            result.row_groups_in += 1
            result.rows_in += t.num_rows
            if may_match is None or r in may_match:
                t = _drop_matches(t, columns, result, personal, salt)
            # every row group, not only those that lost rows: a dictionary passed through keeps entries no row
            # of its row group uses (an enum's domain, a dictionary a writer shared across row groups, which
            # may hold another group's values), and verification rightly refuses them
            t = compact_dictionaries(t)
            if t.num_rows == 0:
                continue
            if writer is None:
                sink = open_sink()
                writer = pq.ParquetWriter(sink, schema, **options)
            writer.write_table(t, row_group_size=t.num_rows)
            result.row_groups_out += 1
    except BaseException:
        _close(sink)  # no footer: a half-written file never looks like a whole one
        raise
    if writer is not None:
        if kept_metadata:
            writer.add_key_value_metadata(kept_metadata)
        writer.close()
    _close(sink)
    return _sorted_lineage(result)


#: a remote file up to this size is read whole in one request before it is rewritten (memory: its bytes)
HOLD_REMOTE_BYTES = 64 << 20


#: files read where they are (memory, local disk); any other NativeFile is remote (on S3, a GET a read)
_LOCAL_FILES = (pa.BufferReader, pa.MemoryMappedFile, pa.OSFile)


def _held(source: Any) -> Any:
    """`source`, or its bytes when it is a remote file of at most HOLD_REMOTE_BYTES: on S3 a splice reads
    the subject columns, the footer, the indexes and the pages in several requests (7 GETs for a month
    file against 1), and a file it declines is then read again for the whole rewrite."""
    if not isinstance(source, pa.NativeFile) or isinstance(source, _LOCAL_FILES):
        return source
    size = source.size()
    return pa.BufferReader(source.read_at(size, 0)) if size <= HOLD_REMOTE_BYTES else source


def _sorted_lineage(result: RewriteResult) -> RewriteResult:
    for lines in result.lineage.values():
        lines.sort()
    return result


def _spliced(source: Any, md: pq.FileMetaData, options: dict[str, Any], columns: Sequence[ColumnValues],
             row_groups: Sequence[int] | None, open_sink: Callable[[], Any], personal: Sequence[str], salt: bytes,
             ) -> RewriteResult | str:
    """The rewrite done by splice.py (only the pages holding a removed row written again), or why not when
    that does not pay or cannot be done exactly: the caller then rewrites the file whole."""
    candidates = range(md.num_row_groups) if row_groups is None else sorted(set(row_groups))
    if not any(md.row_group(r).num_rows >= splice.MIN_ROWS for r in candidates):
        return "row groups of one page a column"  # every page would be written again anyway
    if not isinstance(source, (str, os.PathLike, pa.NativeFile)):
        return "a Python file object (no read_at)"  # pyarrow reads it for the whole rewrite
    f = pa.memory_map(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else source
    try:
        return _splice_file(f, md, options, columns, candidates, open_sink, personal, salt)
    finally:
        if f is not source:
            f.close()


def _splice_file(f: Any, md: pq.FileMetaData, options: dict[str, Any], columns: Sequence[ColumnValues],
                 candidates: Sequence[int], open_sink: Callable[[], Any], personal: Sequence[str], salt: bytes,
                 ) -> RewriteResult | str:
    """`_spliced` on an open file: the subject columns read first, so a file most of whose pages hold a
    removed row costs only that read before it goes to the whole rewrite."""
    def direct(offset: int, length: int) -> bytes:
        return f.read_at(length, offset)

    read_at = direct if isinstance(f, _LOCAL_FILES) else BlockReader(direct, f.size())  # remote: in blocks
    try:
        layout = splice.read_layout(read_at, f.size())
    except (splice.NotSpliceable, ValueError) as exc:
        return str(exc) or type(exc).__name__
    first = md.row_group(0)
    chunks = [first.column(i) for i in range(first.num_columns)]
    names = md.schema.to_arrow_schema().names
    subject = [n for n in names if n in {cv.column for cv in columns}]
    dictionaries = [names[i] for i, c in enumerate(chunks) if c.has_dictionary_page]
    kept = [n for i, n in enumerate(names) if n in dictionaries or chunks[i].bloom_filter_offset]
    rest = [n for n in names if n not in subject and (n in (OBJECT_COLUMN, LINE_COLUMN) or n in personal or n in kept)]
    pf = pq.ParquetFile(f, metadata=md, read_dictionary=[c for c in dictionaries if c not in subject] or None,
                        pre_buffer=not isinstance(f, pa.BufferReader))
    found: dict[int, tuple[pa.Table, pa.ChunkedArray | pa.Array]] = {}
    deleted = {}
    for r in candidates:
        t = pf.read_row_group(r, columns=subject, use_threads=False)
        mask = match_mask(t, columns)
        positions = pc.indices_nonzero(mask) if mask is not None else None
        if positions is not None and len(positions):
            found[r], deleted[r] = (t, mask), positions.to_numpy()
    if not deleted:
        return "no row to remove"
    touched, total = splice.touched_share(layout, deleted)
    if touched > splice.MAX_REWRITTEN_SHARE * total:
        return f"{touched / total:.0%} of the bytes in pages holding a removed row"
    result = RewriteResult(row_groups_in=md.num_row_groups, rows_in=md.num_rows)
    # a row group that lost no row is copied: its dictionaries are tested too (splice._copied)
    survivors = {r: pf.read_row_group(r, columns=dictionaries, use_threads=False)
                 for r in range(md.num_row_groups) if r not in deleted and dictionaries}
    for r, (t, mask) in found.items():
        if rest:
            more = pf.read_row_group(r, columns=rest, use_threads=False)
            t = pa.table({n: (t if n in subject else more).column(n) for n in names if n in subject or n in rest})
        _note_removed(t, columns, result, personal, salt, mask)
        survivors[r] = t.select(kept).filter(pc.invert(mask))
    try:
        p = splice.plan(read_at, layout, deleted, survivors, options.get("bloom_filter_options") or {})
    except splice.NotSpliceable as exc:
        return str(exc)
    except Exception as exc:
        _log.warning("splice failed (%s); the file is rewritten whole", type(exc).__name__)
        return f"splice failed ({type(exc).__name__})"
    result.row_groups_out = len(p.groups)
    if p.rows:
        sink = open_sink()
        if isinstance(sink, (str, os.PathLike)):  # a path, as ParquetWriter takes one
            sink = pa.OSFile(os.fspath(sink), "wb")
        try:
            result.bytes_copied = splice.write(p, read_at, sink).copied
        except BaseException:
            _close(sink)
            raise
        _close(sink)
    return _sorted_lineage(result)
