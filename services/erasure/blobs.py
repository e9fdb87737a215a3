"""Byte ranges of one object, counted: how FIND proves it read only what it needed.

`Blob` is the minimal interface (size + ranged read); `S3Blob` issues ranged GETs, `LocalBlob`
preads a file (benchmark, tests). `BlobFile` adapts a blob to the file object pyarrow's Parquet
reader wants, so the footer and the column chunks it fetches are counted too. `BlockReader` serves
many small reads of a remote file (a splice's) from a few cached blocks.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from contracts import aws


class Blob(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes: ...


@dataclass
class ReadStats:
    """Bytes and requests one probe or rewrite fetched."""

    bytes: int = 0
    requests: int = 0

    def add(self, other: ReadStats) -> None:
        self.bytes += other.bytes
        self.requests += other.requests


@dataclass
class S3Blob:
    bucket: str
    key: str
    size: int
    stats: ReadStats = field(default_factory=ReadStats)
    version_id: str | None = None  # an older version (staging, old generations, superseded objects)

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        end = min(self.size, offset + length) - 1
        version = {"VersionId": self.version_id} if self.version_id else {}
        resp = aws.client("s3").get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={offset}-{end}", **version)
        data = resp["Body"].read()
        self.stats.bytes += len(data)
        self.stats.requests += 1
        return data


@dataclass
class LocalBlob:
    path: str
    size: int = -1
    stats: ReadStats = field(default_factory=ReadStats)

    def __post_init__(self) -> None:
        if self.size < 0:
            self.size = os.path.getsize(self.path)

    def read(self, offset: int, length: int) -> bytes:
        fd = os.open(self.path, os.O_RDONLY)  # no buffered file object: a probe reads thousands of files
        try:
            data = os.pread(fd, max(0, length), offset)
        finally:
            os.close(fd)
        self.stats.bytes += len(data)
        self.stats.requests += 1
        return data


class CachedBlob:
    """A blob that remembers what it fetched: the footer read (the file's last 64 KiB, often all of
    a small file) then serves bloom filters and column chunks without another request."""

    def __init__(self, blob: Blob) -> None:
        self.blob = blob
        self.size = blob.size
        self.segments: list[tuple[int, bytes]] = []

    @property
    def stats(self) -> ReadStats:
        return getattr(self.blob, "stats", ReadStats())

    def read(self, offset: int, length: int) -> bytes:
        end = min(self.size, offset + length)
        for start, data in self.segments:
            if start <= offset and end <= start + len(data):
                return data[offset - start : end - start]
        data = self.blob.read(offset, end - offset)
        self.segments.append((offset, data))
        return data

    def view(self, offset: int, length: int) -> bytes | memoryview:
        """`read`, without copying what is already held (a bloom filter inside a file fetched whole)."""
        end = min(self.size, offset + length)
        for start, data in self.segments:
            if start <= offset and end <= start + len(data):
                return memoryview(data)[offset - start : end - start]
        return self.read(offset, length)


class BlobFile(io.RawIOBase):
    """A read-only, seekable file over a blob; each read is one ranged request."""

    def __init__(self, blob: Blob) -> None:
        super().__init__()
        self.blob = blob
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.blob.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), max(0, self.blob.size - self.pos))
        if n == 0:
            return 0
        data = self.blob.read(self.pos, n)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        n = self.blob.size - self.pos if size is None or size < 0 else min(size, self.blob.size - self.pos)
        if n <= 0:
            return b""
        data = self.blob.read(self.pos, n)
        self.pos += len(data)
        return data

    def size(self) -> int:
        return self.blob.size


class BlockReader:
    """`read_at` over a remote file in aligned blocks, the last few kept: splicing reads a file's footer, its
    indexes, the touched pages, then copies the rest in order, and on S3 each read is a GET (~20 ms and a
    request charge); with blocks, about two GETs a block of the file."""

    def __init__(self, read_at: Callable[[int, int], bytes], size: int, block: int = 8 << 20, keep: int = 4) -> None:
        self._read, self.size, self.block, self.keep = read_at, size, block, keep
        self._blocks: dict[int, bytes] = {}
        self.requests = 0

    def _get(self, k: int) -> bytes:
        data = self._blocks.pop(k, None)
        if data is None:
            data = self._read(k * self.block, min(self.block, self.size - k * self.block))
            self.requests += 1
        self._blocks[k] = data  # most recently used last
        while len(self._blocks) > self.keep:
            del self._blocks[next(iter(self._blocks))]
        return data

    def __call__(self, offset: int, length: int) -> bytes:
        if length >= self.block:  # a long copy: read straight through, the blocks kept for what is small
            self.requests += 1
            return self._read(offset, length)
        first, last = offset // self.block, (offset + length - 1) // self.block
        parts = [self._get(k) for k in range(first, last + 1)]
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        start = offset - first * self.block
        return data[start : start + length]
