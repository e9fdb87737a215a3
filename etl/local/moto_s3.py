"""The emulator's S3 data plane, made to scale: bodies stream from disk, copies keep true checksums.

moto keeps each object body in a `SpooledTemporaryFile` (memory up to a threshold, then an unlinked
temp file) but reads the *whole* body into memory for every GET — a 64 KiB ranged read of a 1.7 GB
object copied 1.7 GB — and for every CopyObject, UploadPartCopy and CompleteMultipartUpload
(which also held every part and their concatenation at once). ListObjectVersions deep-copied every
version in the bucket, bodies included, to set `is_latest` on the copies. And CopyObject carried a
multipart source's *composite* checksum over to the copy without its type and part count, so the
copy advertised it as a full-object checksum of its own bytes: botocore's response validation then
raises `FlexibleChecksumError` on the copy, although the bytes are right.

`install()` patches moto in the process that runs the emulator (the local platform's supervisor):

- reads: GETs (whole or ranged) and copy sources are served by `FileRange`, a view of a dup'ed file
  descriptor that `os.pread`s 1 MiB at a time; moto's own range handling only slices it;
- writes: a key built from a `FileRange` or from the parts of a multipart upload (`Concat`) copies
  1 MiB at a time into its spool file; completed uploads drop their parts' bodies;
- ListObjectVersions copies version records, never bodies (`FakeKey.__deepcopy__`);
- CompleteMultipartUpload sends one ObjectCreated notification, as S3 does (moto sent a Put event
  too, so every multipart upload reached ingest twice);
- CopyObject gives the copy a full-object checksum computed over the copy's bytes with the
  source's algorithm (as S3 does for a copy made in one request); CompleteMultipartUpload computes
  composite and full-object checksums by streaming. An algorithm this process cannot compute
  (CRC32C, CRC64NVME without their optional libraries) leaves the object without a checksum
  rather than with a wrong one (moto silently substituted CRC32);
- bodies above `SPOOL_BYTES` live on disk (unlinked temp files), so the emulator's memory does not
  grow with object sizes or version counts.

Nothing here changes what a client sees except checksums that are now right: it is the emulator's
data plane, local only (docs/design/local-platform.md).
"""

from __future__ import annotations

import binascii
import contextlib
import ctypes
import hashlib
import os
import threading
from base64 import b64encode
from collections.abc import Iterator
from typing import Any

CHUNK = 1 << 20
#: bodies larger than this are spooled to disk (moto's default is ~5 MB, kept in memory per version)
SPOOL_BYTES = 256 * 1024
_local = threading.local()
_patched: list[tuple[Any, str, Any]] = []  # (owner, attribute, original) of every patch, for uninstall()


class _Fd:
    """A file descriptor closed when the last view of it goes away."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class FileRange:
    """Bytes [start, stop) of a key's spool file, read on demand: len(), slicing and iteration only.

    Holds its own descriptor (dup), so a GET in flight survives a concurrent delete of the version.
    """

    def __init__(self, fd: _Fd, start: int, stop: int) -> None:
        self._fd, self.start, self.stop = fd, start, stop

    @classmethod
    def of(cls, key: Any) -> FileRange:
        with key.lock:
            key._value_buffer.flush()
            fd = _Fd(os.dup(key._value_buffer.fileno()))
        return cls(fd, 0, key.size)

    def __len__(self) -> int:
        return self.stop - self.start

    def __bool__(self) -> bool:
        return self.stop > self.start

    def __getitem__(self, item: slice) -> FileRange:
        if not isinstance(item, slice) or item.step not in (None, 1):
            raise TypeError("FileRange supports contiguous slices only")
        begin, end, _ = item.indices(len(self))
        return FileRange(self._fd, self.start + begin, self.start + max(begin, end))

    def __iter__(self) -> Iterator[bytes]:
        pos = self.start
        while pos < self.stop:
            block = os.pread(self._fd.fd, min(CHUNK, self.stop - pos), pos)
            if not block:
                raise OSError(f"spool file ended at {pos}, expected {self.stop}")
            pos += len(block)
            yield block

    def whole_file(self) -> bool:
        return self.start == 0 and os.fstat(self._fd.fd).st_size == self.stop

    def share_into(self, buffer: Any) -> None:
        """Make a key's spool file another handle on this (unlinked, never rewritten) file: a copy costs no bytes.

        moto never writes to a key's body after creating the key, so two keys may share one inode;
        the file goes away when the last key holding it is deleted. Reopened through /proc (not
        dup'ed), so each key keeps its own file offset.
        """
        handle = os.fdopen(os.open(f"/proc/self/fd/{self._fd.fd}", os.O_RDWR), "r+b")
        buffer._file.close()
        buffer._file, buffer._rolled = handle, True
        handle.seek(0, os.SEEK_END)

    def copy_to(self, fd: int, out: int = 0) -> None:
        """Copy these bytes into file `fd` at offset `out` inside the kernel (no trip through Python)."""
        pos = self.start
        while pos < self.stop:
            n = os.copy_file_range(self._fd.fd, fd, self.stop - pos, pos, out)
            if n <= 0:
                raise OSError(f"spool file ended at {pos}, expected {self.stop}")
            pos, out = pos + n, out + n

    def read_all(self) -> bytes:
        return b"".join(self)


class Concat:
    """The bodies of a multipart upload's parts, in order, without joining them in memory."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            yield from chunks(part)

    def write_to(self, fd: int) -> int:
        """Write every part into file `fd` from offset 0 (kernel copies for parts on disk); return the size."""
        out = 0
        for part in self.parts:
            if isinstance(part, FileRange):
                part.copy_to(fd, out)
            else:
                os.pwrite(fd, part, out)
            out += len(part)
        return out


def chunks(body: Any) -> Iterator[bytes]:
    """A body (bytes, FileRange, Concat) in pieces of at most CHUNK bytes."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        view = memoryview(body)
        for i in range(0, len(view), CHUNK):
            yield bytes(view[i : i + CHUNK])
    else:
        yield from body


def body_of(key: Any) -> Any:
    """The key's body as bytes (small, in memory) or a FileRange (spooled to disk)."""
    if getattr(key._value_buffer, "_rolled", False):
        return FileRange.of(key)
    return _ORIGINAL["value"].fget(key)


# -- checksums, by streaming -------------------------------------------------------------------------
class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = binascii.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def hasher(algorithm: str) -> Any | None:
    """An incremental hasher for an S3 checksum algorithm, or None if this process cannot compute it."""
    algorithm = algorithm.upper()
    if algorithm == "CRC32":
        return _Crc32()
    if algorithm in ("SHA1", "SHA256"):
        return hashlib.new(algorithm.lower(), usedforsecurity=False)
    return None  # CRC32C / CRC64NVME need optional native libraries this environment may lack


def checksum(body: Any, algorithm: str) -> str | None:
    """base64 checksum of a whole body, streamed; None when the algorithm is not computable here."""
    h = hasher(algorithm)
    if h is None:
        return None
    for block in chunks(body):
        h.update(block)
    return b64encode(h.digest()).decode()


def multipart_checksum(parts: list[Any], algorithm: str | None, kind: str | None) -> tuple[str, str, int] | None:
    """(type, value, parts) as S3 computes it on CompleteMultipartUpload, or None."""
    if not algorithm:
        return None
    kind = kind or ("FULL_OBJECT" if algorithm.upper() == "CRC64NVME" else "COMPOSITE")
    if kind == "FULL_OBJECT":
        value = checksum(Concat(parts), algorithm)
        return None if value is None else (kind, value, 1)
    outer = hasher(algorithm)
    if outer is None:
        return None
    digests = bytearray()
    for part in parts:
        inner: Any = hasher(algorithm)  # computable: the outer one was
        for block in chunks(part):
            inner.update(block)
        digests.extend(inner.digest())
    outer.update(bytes(digests))
    return kind, b64encode(outer.digest()).decode(), len(parts)


# -- the patches ---------------------------------------------------------------------------------------
_ORIGINAL: dict[str, Any] = {}


class _VersionView:
    """Marker base for shallow version records (see FakeKey.__deepcopy__ below)."""


def _patch(owner: Any, name: str, value: Any) -> None:
    _patched.append((owner, name, owner.__dict__.get(name, _MISSING)))
    setattr(owner, name, value)


_MISSING = object()


def uninstall() -> None:
    """Undo install() (tests that run other moto servers in the same process)."""
    while _patched:
        owner, name, original = _patched.pop()
        if original is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, original)


def installed() -> bool:
    return bool(_patched)


def return_freed_memory() -> None:
    """Make glibc give big freed buffers back to the OS instead of keeping them per thread arena.

    Request bodies (8 MiB parts, Parquet files) are allocated and freed by many server threads; with
    glibc's defaults each thread arena keeps its high-water mark, so the emulator's RSS climbed with
    the number of parts it had seen. Fixed mmap threshold (1 MiB) and two arenas keep it flat.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    libc.mallopt(m_mmap_threshold, 1 << 20)
    libc.mallopt(m_trim_threshold, 8 << 20)
    libc.mallopt(m_arena_max, 2)


def install() -> None:
    """Patch moto's S3 in this process (idempotent). Call before the emulator serves requests."""
    if _patched:
        return
    return_freed_memory()
    from moto.s3 import models, responses

    _patch(models, "get_s3_default_key_buffer_size", lambda: SPOOL_BYTES)

    fake_key = models.FakeKey
    _ORIGINAL["value"] = fake_key.value

    def value_get(self: Any) -> Any:
        if getattr(_local, "lazy", False):
            return body_of(self)
        return _ORIGINAL["value"].fget(self)

    def value_set(self: Any, new_value: Any) -> None:
        if isinstance(new_value, (FileRange, Concat)):
            with getattr(self, "lock", None) or contextlib.nullcontext():  # __init__ sets the value before the lock
                buffer = self._value_buffer
                buffer.seek(0)
                buffer.truncate()
                if isinstance(new_value, FileRange) and new_value.whole_file() and len(new_value) > SPOOL_BYTES:
                    new_value.share_into(buffer)  # a copy of a whole immutable body: same bytes on disk
                    size = len(new_value)
                elif len(new_value) > SPOOL_BYTES:  # straight into the spool file, inside the kernel
                    buffer.rollover()
                    buffer.flush()
                    if isinstance(new_value, FileRange):
                        new_value.copy_to(buffer.fileno())
                        size = len(new_value)
                    else:
                        size = new_value.write_to(buffer.fileno())
                    buffer.seek(size)
                else:
                    size = 0
                    for block in new_value:
                        buffer.write(block)
                        size += len(block)
                self.contentsize = size
            return
        _ORIGINAL["value"].fset(self, new_value)

    _patch(fake_key, "value", property(value_get, value_set))

    def keep(self: Any, garbage: bool = False) -> None:
        """A version record never closes the body it shares."""

    view_class = type("FakeKeyVersion", (_VersionView, fake_key), {"__del__": keep, "dispose": keep})

    def deepcopy_key(self: Any, memo: dict[int, Any]) -> Any:
        """A version record sharing the body: list_object_versions only sets `is_latest` on it."""
        clone: Any = object.__new__(view_class)
        clone.__dict__.update(self.__dict__)
        return clone

    _patch(fake_key, "__deepcopy__", deepcopy_key)

    def lazily(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            previous = getattr(_local, "lazy", False)
            _local.lazy = True
            try:
                return fn(*args, **kwargs)
            finally:
                _local.lazy = previous

        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper

    # GET: the response body is a FileRange; moto's range handling slices it, werkzeug streams it.
    _patch(responses.S3Response, "get_object", lazily(responses.S3Response.get_object))
    # UploadPartCopy: the part is filled from a slice of the source's file.
    _patch(models.S3Backend, "upload_part_copy", lazily(models.S3Backend.upload_part_copy))

    original_put = models.S3Backend.put_object

    def put_object(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "completing", False):  # S3 sends one event per upload: CompleteMultipartUpload's
            kwargs["disable_notification"] = True
        key = original_put(self, *args, **kwargs)
        _local.last_put = key
        src = getattr(_local, "copy_src", None)
        if src is not None and src._etag and "-" not in src._etag and key.size == src.size:
            key._etag = src._etag  # a single-part ETag is the MD5 of the bytes, which the copy shares
        return key

    _patch(models.S3Backend, "put_object", put_object)

    original_copy = lazily(models.S3Backend.copy_object)

    def copy_object(self: Any, src_key: Any, *args: Any, **kwargs: Any) -> Any:
        """Copy by streaming; the copy's checksum is computed over the copy's bytes (full object)."""
        _local.last_put, _local.copy_src = None, src_key
        try:
            result = original_copy(self, src_key, *args, **kwargs)
        finally:
            _local.copy_src = None
        new_key = _local.last_put
        if new_key is not None and src_key.checksum_algorithm:
            composite = src_key.checksum_type == "COMPOSITE" or (src_key.checksum_parts or 1) > 1
            # a full-object checksum is the same for the same bytes; a composite one must be computed afresh
            value = (checksum(body_of(new_key), src_key.checksum_algorithm) if composite or not src_key.checksum_value
                     else src_key.checksum_value)
            new_key.checksum_algorithm = src_key.checksum_algorithm if value else None
            new_key.checksum_value = value
            new_key.checksum_type = "FULL_OBJECT" if value else None
            new_key.checksum_parts = None
        return result

    _patch(models.S3Backend, "copy_object", copy_object)

    def complete(self: Any, body: Any) -> tuple[Any, str, tuple[str, str, int] | None]:
        """FakeMultipart.complete without joining the parts: a Concat of their bodies, checksums streamed."""
        decode_hex = binascii.unhexlify
        md5s = bytearray()
        parts: list[Any] = []
        last = None
        for pn, etag in body:
            part = self.parts.get(pn)
            if part is None or part.etag.replace('"', "") != etag.replace('"', ""):
                raise models.InvalidPart()
            if last is not None and last.contentsize < models.S3_UPLOAD_PART_MIN_SIZE:
                raise models.EntityTooSmall()
            md5s.extend(decode_hex(part.etag.replace('"', "")))
            parts.append(body_of(part))
            last = part
        if not parts:
            raise models.MalformedXML()
        details = multipart_checksum(parts, self.metadata.get("x-amz-checksum-algorithm"),
                                     self.metadata.get("x-amz-checksum-type"))
        etag = f"{hashlib.md5(bytes(md5s), usedforsecurity=False).hexdigest()}-{len(parts)}"
        return Concat(parts), etag, details

    _patch(models.FakeMultipart, "complete", complete)

    original_complete_upload = models.S3Backend.complete_multipart_upload

    def complete_multipart_upload(self: Any, bucket_name: str, multipart_id: str, body: Any) -> Any:
        """Complete, then free the parts' bodies: the object holds its own copy of every byte."""
        multipart = self.get_bucket(bucket_name).multiparts.get(multipart_id)
        _local.completing = True
        try:
            key = original_complete_upload(self, bucket_name, multipart_id, body)
        finally:
            _local.completing = False
        if key is not None and multipart is not None:
            for part in multipart.parts.values():
                _ = part.etag  # cache it: the body that would compute it is going away
                part._value_buffer.close()
        return key

    _patch(models.S3Backend, "complete_multipart_upload", complete_multipart_upload)
