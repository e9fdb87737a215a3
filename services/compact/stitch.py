"""Join Parquet files that each hold some of the columns of the same row groups into one file.

Why: pyarrow encodes a row group's columns one after the other on one thread (the C++ writer's
threaded column encoding has no Python binding), and the encode is a third of a compaction. With
worker threads, the writer hands each thread a subset of the columns to encode into its own part
file, then this module copies every column chunk, bloom filter and page index into the output file
(in the kernel: `os.copy_file_range`), moves the offsets that point at them, and writes the footer
the single writer would have written (schema, key-value metadata and column orders from a
`template` footer written with the full schema and the same options). Column chunks are byte for
byte what the single writer encodes: the same options apply to each column wherever it is encoded.

Only flat schemas (one leaf per field), unencrypted, as the lake writes them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from contracts import thrift
from contracts.thrift import I16, I32, I64, LIST, STRUCT, Struct

MAGIC = b"PAR1"
_COPY_CHUNK = 8 << 20

# parquet.thrift field ids
_FM_NUM_ROWS, _FM_ROW_GROUPS = 3, 4
_RG_COLUMNS, _RG_TOTAL_BYTES, _RG_ROWS, _RG_SORTING, _RG_FILE_OFFSET, _RG_COMPRESSED, _RG_ORDINAL = range(1, 8)
_CC_FILE_OFFSET, _CC_META = 2, 3
_CC_OFFSET_INDEX, _CC_OFFSET_INDEX_LEN, _CC_COLUMN_INDEX, _CC_COLUMN_INDEX_LEN = 4, 5, 6, 7
_MD_UNCOMPRESSED, _MD_COMPRESSED = 6, 7
_MD_DATA_PAGE, _MD_INDEX_PAGE, _MD_DICTIONARY_PAGE = 9, 10, 11
_MD_BLOOM, _MD_BLOOM_LEN = 14, 15
_BLOOM_NUM_BYTES = 1
_OI_PAGES, _PL_OFFSET = 1, 1


class StitchError(ValueError):
    """The part files do not hold the same row groups, or a structure is not what the lake writes."""


@dataclass(frozen=True)
class Part:
    """A part file and, for each of its columns in order, that column's index in the output's schema."""

    path: Path
    columns: Sequence[int]


def footer_of(data: bytes) -> Struct:
    """The FileMetaData of a whole Parquet file held in memory (e.g. a template)."""
    if data[-4:] != MAGIC:
        raise StitchError("not a Parquet file")
    n = int.from_bytes(data[-8:-4], "little")
    return thrift.decode(data[-8 - n : -8])[0]


def _read_footer(f: BinaryIO) -> Struct:
    f.seek(-8, os.SEEK_END)
    tail = f.read(8)
    if tail[4:] != MAGIC:
        raise StitchError("a part file is not a Parquet file")
    n = int.from_bytes(tail[:4], "little")
    f.seek(-8 - n, os.SEEK_END)
    return thrift.decode(f.read(n))[0]


def stitch(parts: Sequence[Part], template: Struct, sorting: Sequence[Struct] | None, out: Path) -> int:
    """Write `out` from the parts' columns in schema order; returns its size in bytes.

    `template` is the footer of a file written with the output's full schema and options (no rows);
    `sorting` the row groups' SortingColumn structs, in the output's column indices (None: none).
    """
    handles = [open(p.path, "rb") for p in parts]  # noqa: SIM115 - closed in finally
    try:
        footers = [_read_footer(h) for h in handles]
        where = _column_owners(parts, template)
        groups = [thrift.field(f, _FM_ROW_GROUPS, []) for f in footers]
        if len({len(g) for g in groups}) != 1:
            raise StitchError("part files hold different numbers of row groups")
        with open(out, "wb") as dst:
            dst.write(MAGIC)
            writer = _Writer(dst, handles)
            row_groups = [_row_group(writer, [g[r] for g in groups], where, r, sorting) for r in range(len(groups[0]))]
            writer.copy_indexes()
            meta = dict(template)
            meta[_FM_NUM_ROWS] = (I64, sum(thrift.field(rg, _RG_ROWS) for rg in row_groups))
            meta[_FM_ROW_GROUPS] = (LIST, (STRUCT, row_groups))
            footer = thrift.encode(meta)
            dst.write(footer)
            dst.write(len(footer).to_bytes(4, "little") + MAGIC)
            return dst.tell()
    finally:
        for h in handles:
            h.close()


def _column_owners(parts: Sequence[Part], template: Struct) -> list[tuple[int, int]]:
    """For each output column, (part index, column position in that part)."""
    leaves = len(thrift.field(template, 2)) - 1  # schema elements: the root, then one per flat field
    owners: dict[int, tuple[int, int]] = {}
    for p, part in enumerate(parts):
        for j, c in enumerate(part.columns):
            if c in owners:
                raise StitchError(f"column {c} is in two part files")
            owners[c] = (p, j)
    if sorted(owners) != list(range(leaves)):
        raise StitchError("the part files' columns are not the template's")
    return [owners[c] for c in range(leaves)]


class _Writer:
    """Copies byte ranges from the part files to the output, remembering the indexes to place last."""

    def __init__(self, dst: BinaryIO, sources: Sequence[BinaryIO]) -> None:
        self.dst, self.sources = dst, sources
        self._indexes: list[tuple[int, Struct, int]] = []  # (part, column chunk, shift of its pages)

    def copy(self, part: int, offset: int, length: int) -> int:
        """Append `length` bytes from `offset` of a part file; returns where they start in the output."""
        self.dst.flush()
        start = self.dst.tell()
        src, dst = self.sources[part].fileno(), self.dst.fileno()
        done = 0
        while done < length:
            n = _copy_range(src, dst, length - done, offset + done, start + done)
            if n <= 0:
                raise StitchError("a part file ends inside a column chunk")
            done += n
        self.dst.seek(start + length)
        return start

    def chunk(self, part: int, cc: Struct) -> Struct:
        """Copy one column chunk's pages; returns the chunk's metadata with its offsets moved."""
        md = dict(thrift.field(cc, _CC_META))
        begin = min(thrift.field(md, f) for f in (_MD_DATA_PAGE, _MD_DICTIONARY_PAGE, _MD_INDEX_PAGE) if f in md)
        start = self.copy(part, begin, thrift.field(md, _MD_COMPRESSED))
        shift = start - begin
        for f in (_MD_DATA_PAGE, _MD_DICTIONARY_PAGE, _MD_INDEX_PAGE):
            if f in md:
                md[f] = (I64, thrift.field(md, f) + shift)
        moved = dict(cc)
        moved[_CC_META] = (STRUCT, md)
        if thrift.field(cc, _CC_FILE_OFFSET):  # deprecated; pyarrow writes 0
            moved[_CC_FILE_OFFSET] = (I64, thrift.field(cc, _CC_FILE_OFFSET) + shift)
        self._indexes.append((part, moved, shift))
        return moved

    def copy_indexes(self) -> None:
        """Bloom filters, then column indexes, then offset indexes (their page offsets moved)."""
        for part, cc, _ in self._indexes:
            md = thrift.field(cc, _CC_META)
            if _MD_BLOOM in md:
                offset = thrift.field(md, _MD_BLOOM)
                length = thrift.field(md, _MD_BLOOM_LEN) or self._bloom_length(part, offset)
                md[_MD_BLOOM] = (I64, self.copy(part, offset, length))
        for part, cc, _ in self._indexes:
            if _CC_COLUMN_INDEX in cc:
                start = self.copy(part, thrift.field(cc, _CC_COLUMN_INDEX), thrift.field(cc, _CC_COLUMN_INDEX_LEN))
                cc[_CC_COLUMN_INDEX] = (I64, start)
        for part, cc, shift in self._indexes:
            if _CC_OFFSET_INDEX in cc:
                src = self.sources[part]
                src.seek(thrift.field(cc, _CC_OFFSET_INDEX))
                index = thrift.decode(src.read(thrift.field(cc, _CC_OFFSET_INDEX_LEN)))[0]
                pages = [dict(p) for p in thrift.field(index, _OI_PAGES)]
                for p in pages:
                    p[_PL_OFFSET] = (I64, thrift.field(p, _PL_OFFSET) + shift)
                index[_OI_PAGES] = (LIST, (STRUCT, pages))
                encoded = thrift.encode(index)
                self.dst.seek(0, os.SEEK_END)
                cc[_CC_OFFSET_INDEX] = (I64, self.dst.tell())
                cc[_CC_OFFSET_INDEX_LEN] = (I32, len(encoded))
                self.dst.write(encoded)

    def _bloom_length(self, part: int, offset: int) -> int:
        """Older writers leave bloom_filter_length out: the header says how many bytes follow it."""
        src = self.sources[part]
        src.seek(offset)
        head = src.read(64)
        header, end = thrift.decode(head)
        return end + thrift.field(header, _BLOOM_NUM_BYTES)


def _row_group(
    writer: _Writer, pieces: Sequence[Struct], where: Sequence[tuple[int, int]], ordinal: int,
    sorting: Sequence[Struct] | None,
) -> Struct:
    rows = {thrift.field(p, _RG_ROWS) for p in pieces}
    if len(rows) != 1:
        raise StitchError(f"row group {ordinal} has different row counts in the part files: {sorted(rows)}")
    chunks = [thrift.field(p, _RG_COLUMNS) for p in pieces]
    columns = [writer.chunk(part, chunks[part][j]) for part, j in where]
    metas = [thrift.field(c, _CC_META) for c in columns]
    first = metas[0]
    rg: Struct = {
        _RG_COLUMNS: (LIST, (STRUCT, columns)),
        _RG_TOTAL_BYTES: (I64, sum(thrift.field(m, _MD_UNCOMPRESSED) for m in metas)),
        _RG_ROWS: (I64, rows.pop()),
        _RG_FILE_OFFSET: (I64, min(thrift.field(first, f) for f in (_MD_DATA_PAGE, _MD_DICTIONARY_PAGE) if f in first)),
        _RG_COMPRESSED: (I64, sum(thrift.field(m, _MD_COMPRESSED) for m in metas)),
    }
    if _RG_ORDINAL in pieces[0]:  # written by some writers only (pyarrow 26 leaves it out)
        rg[_RG_ORDINAL] = (I16, ordinal)
    if sorting:
        rg[_RG_SORTING] = (LIST, (STRUCT, list(sorting)))
    return rg


def _copy_range(src: int, dst: int, count: int, src_offset: int, dst_offset: int) -> int:
    """The kernel's copy where there is one (Linux: no bytes through user space), else read and write."""
    count = min(count, _COPY_CHUNK)
    if hasattr(os, "copy_file_range"):
        try:
            return os.copy_file_range(src, dst, count, src_offset, dst_offset)
        except OSError:  # e.g. across file systems on old kernels: fall back to a plain copy
            pass
    data = os.pread(src, count, src_offset)
    return os.pwrite(dst, data, dst_offset)
