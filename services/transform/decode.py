"""From whatever the caller holds (bytes, a path, a file) to validated UTF-8 bytes.

Compression is detected by magic bytes, never by name: producers name files freely. Every problem
here concerns the whole object, so it raises TransformError.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path
from typing import BinaryIO, TypeAlias

import numpy as np
import pyarrow as pa

from services.transform.chunks import GZIP_MAGIC, ByteRange
from services.transform.errors import TransformError
from services.transform.lines import Text, find_byte

Source: TypeAlias = bytes | bytearray | memoryview | str | Path | BinaryIO | pa.NativeFile
UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_ZIP_MAGIC = b"PK\x03\x04"


def _size_of(fh: BinaryIO | pa.NativeFile) -> int:
    if isinstance(fh, pa.NativeFile):
        return fh.size()
    try:
        return os.fstat(fh.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        here = fh.tell()
        size = fh.seek(0, io.SEEK_END)
        fh.seek(here)
        return size


def _read_range(fh: BinaryIO | pa.NativeFile, start: int, length: int, pooled: bool = False) -> Text:
    if isinstance(fh, pa.NativeFile):
        if pooled:
            fh.seek(start)
            return fh.read_buffer(length)
        data = fh.read_at(length, start)  # bytes from pyarrow's S3 files, a Buffer from others
        return data if isinstance(data, bytes) else data.to_pybytes()
    fh.seek(start)
    return fh.read(length)


def _check_range(chunk: ByteRange, size: int, object_id: str) -> None:
    if chunk.end > size:
        raise TransformError(object_id, f"chunk [{chunk.start}, {chunk.end}) is beyond the object's {size} bytes")


def read_object(data: Source, chunk: ByteRange | None, object_id: str, *, pooled: bool = False) -> tuple[Text, bool]:
    """The bytes to transform and whether they are the whole object.

    With a chunk only its range is read (a pyarrow S3 file then fetches just that range). With
    `pooled`, a path or pyarrow file (an S3 object) is read into a Buffer of pyarrow's memory pool:
    memory the pool keeps once the text is freed (MIMALLOC_PURGE_DELAY), so that the sorted copy,
    and the next chunk's read, reuse it instead of faulting in fresh pages (a 128 MiB read into a
    warm pool: 0.03 s instead of 0.12 s, docs/design/transform-performance.md).
    """
    if isinstance(data, str | Path):
        if pooled:
            with pa.OSFile(str(data)) as native:
                return read_object(native, chunk, object_id, pooled=True)
        with open(data, "rb") as fh:
            return read_object(fh, chunk, object_id)
    if isinstance(data, bytes | bytearray | memoryview):
        whole = bytes(data)
        if chunk is None:
            return whole, True
        _check_range(chunk, len(whole), object_id)
        return whole[chunk.start : chunk.end], chunk.start == 0 and chunk.end == len(whole)
    size = _size_of(data)
    pooled = pooled and isinstance(data, pa.NativeFile)
    if chunk is None:
        return _read_range(data, 0, size, pooled), True
    _check_range(chunk, size, object_id)
    return _read_range(data, chunk.start, chunk.length, pooled), chunk.start == 0 and chunk.end == size


def _invalid_utf8_offset(data: Text) -> int | None:
    """Offset of the first byte that is not UTF-8, or None; vectorised check, Python only to locate."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    values = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    try:
        pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, values]).validate(full=True)
        return None
    except pa.ArrowInvalid:
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            return exc.start
        return 0


def decode(raw: Text, *, object_id: str, whole: bool, at_start: bool, check: bool = True) -> Text:
    """Gunzip if needed, drop a UTF-8 BOM, and check the result is UTF-8 text without NUL bytes.

    `whole` says `raw` is the entire object (a gzip stream cannot be cut into ranges); `at_start`
    says it begins at offset 0 (only there can a BOM or magic bytes be). With `check` False the
    text's scans are left to the caller (`check_text`).
    """
    if at_start and bytes(raw[:2]) == GZIP_MAGIC:
        if not whole:
            raise TransformError(object_id, "is gzip-compressed and cannot be processed in byte ranges")
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise TransformError(object_id, f"is not a readable gzip stream: {exc}") from exc
    if at_start:
        head = bytes(raw[:4])
        if head == _ZIP_MAGIC:
            raise TransformError(object_id, "is a zip archive; only plain or gzip-compressed text is accepted")
        if head[:2] in _UTF16_BOMS:
            raise TransformError(object_id, "is UTF-16 (byte order mark found); only UTF-8 is accepted")
        if head.startswith(UTF8_BOM):
            raw = raw[len(UTF8_BOM) :]
    if check:
        check_text(raw, object_id)
    return raw


def check_text(text: Text, object_id: str) -> None:
    """Raise TransformError unless `text` is UTF-8 without NUL bytes (two scans of it, without the GIL)."""
    bad = _invalid_utf8_offset(text)
    if bad is not None:
        raise TransformError(object_id, f"is not UTF-8 text (invalid byte 0x{text[bad]:02x} at offset {bad})")
    nul = find_byte(text, 0)
    if nul >= 0:
        raise TransformError(object_id, f"contains a NUL byte at offset {nul}: binary data, not CSV/JSON Lines text")
