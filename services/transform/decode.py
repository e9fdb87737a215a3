"""From whatever the caller holds (bytes, a path, a file) to the text to transform, in pieces.

Compression is detected by magic bytes, never by name: producers name files freely. Every problem
here concerns the whole object, so it raises TransformError.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeAlias

import pyarrow as pa

from services.transform.chunks import GZIP_MAGIC, ByteRange
from services.transform.errors import TransformError
from services.transform.pieces import REMOTE_READERS, Pieces

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


def _read_range(fh: BinaryIO | pa.NativeFile, start: int, length: int) -> bytes:
    if isinstance(fh, pa.NativeFile):
        data = fh.read_at(length, start)  # bytes from pyarrow's S3 files, a Buffer from others
        return data if isinstance(data, bytes) else data.to_pybytes()
    fh.seek(start)
    return fh.read(length)


def _check_range(chunk: ByteRange, size: int, object_id: str) -> None:
    if chunk.end > size:
        raise TransformError(object_id, f"chunk [{chunk.start}, {chunk.end}) is beyond the object's {size} bytes")


def read_object(data: Source, chunk: ByteRange | None, object_id: str) -> tuple[bytes, bool]:
    """The bytes to transform, read whole, and whether they are the whole object (with a chunk only its
    range is read: a pyarrow S3 file then fetches just that range)."""
    if isinstance(data, str | Path):
        with open(data, "rb") as fh:
            return read_object(fh, chunk, object_id)
    if isinstance(data, bytes | bytearray | memoryview):
        whole = bytes(data)
        if chunk is None:
            return whole, True
        _check_range(chunk, len(whole), object_id)
        return whole[chunk.start : chunk.end], chunk.start == 0 and chunk.end == len(whole)
    size = _size_of(data)
    if chunk is None:
        return _read_range(data, 0, size), True
    _check_range(chunk, size, object_id)
    return _read_range(data, chunk.start, chunk.length), chunk.start == 0 and chunk.end == size


def open_text(data: Source, chunk: ByteRange | None, object_id: str, *, piece: int, streamed: bool) -> Pieces:
    """The text to transform (`chunk`'s range, or the whole object) in pieces of `piece` bytes.

    `streamed` (CSV that pyarrow reads a block at a time): a path or a pyarrow file (an S3 object) is
    read a piece at a time into pyarrow's memory pool, and the parse starts on the first piece while
    the others arrive (pieces.py). The pool keeps freed memory (MIMALLOC_PURGE_DELAY), so the sorted
    copy and the next chunk's read reuse it instead of faulting in fresh pages. Anything else (JSON
    Lines, gzip, Python file objects) is read whole first, as before.
    """
    if streamed and isinstance(data, str | Path):
        native = pa.OSFile(str(data))
        try:
            pieces = _read_pieces(native, chunk, object_id, piece, on_close=native.close)
        except BaseException:
            native.close()
            raise
        if pieces is not None:
            return pieces
        native.close()
    elif streamed and isinstance(data, pa.NativeFile) and data.seekable():
        pieces = _read_pieces(data, chunk, object_id, piece)
        if pieces is not None:
            return pieces
    raw, whole = read_object(data, chunk, object_id)
    start = chunk.start if chunk else 0
    return Pieces.of_text(decode(raw, object_id=object_id, whole=whole, at_start=start == 0), piece, object_id)


def _read_pieces(native: pa.NativeFile, chunk: ByteRange | None, object_id: str, piece: int,
                 on_close: Callable[[], None] | None = None) -> Pieces | None:
    """Pieces read from a random-access pyarrow file; None for a gzip stream (inflated whole)."""
    size = native.size()
    if chunk is not None:
        _check_range(chunk, size, object_id)
    start, end = (chunk.start, chunk.end) if chunk else (0, size)

    def read(at: int, length: int) -> pa.Buffer:  # a positional read into the pool: safe on several threads
        return native.get_stream(at, length).read_buffer(length)

    head = read(start, min(piece, end - start))
    skip = 0
    if start == 0:
        if bytes(head[:2]) == GZIP_MAGIC:
            return None
        skip = text_start(bytes(head[:4]), object_id)
    local = isinstance(native, pa.OSFile | pa.MemoryMappedFile | pa.BufferReader)
    return Pieces(read, start, end, skip, head.slice(skip), piece, object_id, readers=1 if local else REMOTE_READERS,
                  on_close=on_close)


def text_start(head: bytes, object_id: str) -> int:
    """Where the text begins in an object that begins with `head` (its first 4 bytes): after a UTF-8 byte
    order mark. Raises TransformError for a zip archive and for UTF-16."""
    if head == _ZIP_MAGIC:
        raise TransformError(object_id, "is a zip archive; only plain or gzip-compressed text is accepted")
    if head[:2] in _UTF16_BOMS:
        raise TransformError(object_id, "is UTF-16 (byte order mark found); only UTF-8 is accepted")
    return len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0


def decode(raw: bytes, *, object_id: str, whole: bool, at_start: bool) -> bytes:
    """Gunzip if needed and drop a UTF-8 BOM; the text's scans (UTF-8, NUL) are its pieces' (pieces.py).

    `whole` says `raw` is the entire object (a gzip stream cannot be cut into ranges); `at_start`
    says it begins at offset 0 (only there can a BOM or magic bytes be).
    """
    if at_start and raw[:2] == GZIP_MAGIC:
        if not whole:
            raise TransformError(object_id, "is gzip-compressed and cannot be processed in byte ranges")
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise TransformError(object_id, f"is not a readable gzip stream: {exc}") from exc
    if at_start:
        raw = raw[text_start(raw[:4], object_id) :]
    return raw
