"""An object's text in pieces, read ahead of its parse, each piece scanned as it arrives.

Why: the CSV parse (pyarrow's streaming reader, a block at a time) can start on the first piece instead
of after the last byte (for the function, after its S3 GET; pieces are ranged GETs, several at once),
and the scans that look at every byte run piece by piece beside it, on the threads that read: UTF-8
validity, NUL bytes, where the first `\\r` is, how many line feeds. What needs the whole text (the
verdict of those scans, the last line, the count of lines) is asked once every piece is in (`scanned`),
before any value leaves transform() (docs/design/transform-performance.md).

With one CPU every piece is read and scanned before the parse starts, as the text was before: a
second thread would be a second CPU.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import overload

import numpy as np
import pyarrow as pa

from services.transform.errors import TransformError
from services.transform.lines import Text, count_byte, find_byte

LF, CR = 10, 13
#: pieces read at once from a remote object (S3): one GET streams at a fraction of the function's
#: bandwidth, so several ranges in flight fill it. A local file or a text in memory has one reader:
#: copying a piece from the page cache and scanning it takes half as long as parsing it, and more
#: readers only take the CPU the parse needs (TPC-H SF1, 2 CPUs: docs/design/transform-performance.md)
REMOTE_READERS = 4

#: reads `length` bytes of the object at `offset` into a Buffer (thread-safe: pieces are read concurrently)
ReadAt = Callable[[int, int], pa.Buffer]


@dataclass(frozen=True)
class _Scan:
    """What the byte scans found in one piece (offsets are the text's), and the few bytes the verdict needs
    once the piece itself is let go."""

    lf: int  # line feeds
    cr: int  # first \r, -1 if none
    nul: int  # first NUL byte, -1 if none
    bad: int  # first byte of its inner part (below) that is not UTF-8, -1 if none
    bad_byte: int  # its value
    lead: bytes  # continuation bytes at its start: the end of a character begun in the piece before
    tail: bytes  # the start of a character its end leaves unfinished (empty if none)


@dataclass(frozen=True)
class Scanned:
    """The verdict on the whole text: line feeds counted, the first `\\r` (-1 if none)."""

    lf: int
    cr: int


def _lead(view: np.ndarray) -> int:
    """Continuation bytes (10xxxxxx) at the start of `view`, at most 3: they finish a character before it."""
    n = 0
    while n < min(3, len(view)) and view[n] & 0xC0 == 0x80:
        n += 1
    return n


def _tail(view: np.ndarray) -> int:
    """Where a character that `view` ends before finishing begins (len(view) when none does)."""
    end = len(view)
    for back in range(1, min(4, end + 1)):
        byte = int(view[end - back])
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        return end - back if back < need else end
    return end


def _first_other(view: np.ndarray, byte: int) -> int:
    """Index of the first element of `view` that is not `byte`, or -1; in growing windows (it is usually near)."""
    at, window = 0, 1 << 12
    while at < len(view):
        other = np.flatnonzero(view[at : at + window] != byte)
        if len(other):
            return at + int(other[0])
        at, window = at + window, window * 4
    return -1


def invalid_utf8(data: Text) -> int | None:
    """Offset of the first byte of `data` that is not UTF-8, or None; vectorised, Python only to locate it."""
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


def _scan(piece: pa.Buffer, base: int) -> _Scan:
    """The scans of one piece starting at text offset `base`; none holds the GIL for long."""
    view = np.frombuffer(piece, dtype=np.uint8)
    lead, tail = _lead(view), _tail(view)
    tail = max(tail, lead)
    bad = invalid_utf8(piece.slice(lead, tail - lead)) if tail > lead else None
    cr, nul = find_byte(piece, CR), find_byte(piece, 0)
    return _Scan(lf=count_byte(piece, LF), cr=base + cr if cr >= 0 else -1, nul=base + nul if nul >= 0 else -1,
                 bad=base + lead + bad if bad is not None else -1,
                 bad_byte=int(view[lead + bad]) if bad is not None else -1,
                 lead=bytes(view[:lead]), tail=bytes(view[tail:]))


class Pieces:
    """The text (after any byte order mark) of an object or of one chunk of it, as Buffers of `piece` bytes.

    Made by `of_text` (a text already in memory: pieces are slices of it) or `of_reader` (an object
    read a piece at a time). With a second CPU the pieces are read and scanned on threads of their
    own, in order, while the caller parses those already in; `head` (the first piece) is always in.
    Use as a context manager: leaving stops the reads still pending.
    """

    def __init__(self, read: ReadAt, start: int, end: int, skip: int, head: pa.Buffer, piece: int, object_id: str,
                 *, readers: int = 1, whole: Text | None = None, on_close: Callable[[], None] | None = None) -> None:
        self.object_id = object_id
        self._whole = whole
        self._on_close = on_close
        self._size = end - start - skip
        # raw offsets of the pieces; the first holds the byte order mark, skipped
        bounds = list(range(start + len(head) + skip, end, piece))
        self._bases = [0, *[b - start - skip for b in bounds]]
        self.head = head
        self.ahead = pa.cpu_count() > 1 and len(bounds) + 1 > 1
        self._pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="text-pieces") if self.ahead else None
        self._read = read
        self._ranges = [(start + skip, len(head)), *[(at, min(piece, end - at)) for at in bounds]]
        self._pieces: list[Future[pa.Buffer] | None] = []  # None: let go once parsed (read again if asked for)
        self._scans: list[Future[_Scan]] = []
        self._lock = threading.Lock()
        self._verdict: Scanned | BaseException | None = None
        self._add(lambda: head, 0)
        for k, at in enumerate(bounds, start=1):
            self._add(functools.partial(read, at, min(piece, end - at)), self._bases[k])

    def _add(self, fetch: Callable[[], pa.Buffer], base: int) -> None:
        got: Future[pa.Buffer] = Future()
        scanned: Future[_Scan] = Future()

        def work() -> None:
            try:
                buffer = fetch()
                got.set_result(buffer)
            except BaseException as exc:
                got.set_exception(exc)
                scanned.set_exception(exc)
                return
            try:
                scanned.set_result(_scan(buffer, base))
            except BaseException as exc:
                scanned.set_exception(exc)

        self._pieces.append(got)
        self._scans.append(scanned)
        if self._pool is not None:
            self._pool.submit(work)
        else:
            work()

    @classmethod
    def of_text(cls, text: Text, piece: int, object_id: str) -> Pieces:
        """A text already in memory (bytes or a Buffer); `whole()` gives it back as it is."""
        buffer = text if isinstance(text, pa.Buffer) else pa.py_buffer(text)
        head = buffer.slice(0, min(piece, len(buffer)))
        return cls(lambda at, n: buffer.slice(at, n), 0, len(buffer), 0, head, piece, object_id, whole=text)

    def __len__(self) -> int:
        return self._size

    def __enter__(self) -> Pieces:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the reads not begun, wait for those under way, and close what the text was read from."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            for future in (*self._pieces, *self._scans):  # reads never begun: whoever waits learns why
                if future is not None and not future.done():
                    future.set_exception(RuntimeError(f"object {self.object_id}: its text was closed"))
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def piece(self, k: int) -> pa.Buffer | None:
        """The k-th piece, waiting for it (read again if it was let go); None past the last. Raises what
        reading it raised."""
        if k >= len(self._pieces):
            return None
        future = self._pieces[k]
        if future is None:
            at, length = self._ranges[k]
            return self._read(at, length) if k else self.head
        return future.result()

    def release(self, k: int) -> None:
        """Let the k-th piece go (its reader is done with it): its memory is reused for the next ones. The
        head and the last piece are kept (the start and the end of the text are looked at again); a
        text held whole in memory keeps all. What reads the text whole again reads let-go pieces again."""
        if 0 < k < len(self._pieces) - 1 and self._whole is None:
            self._pieces[k] = None

    def stream(self, offset: int, first: int | None = None) -> _Stream:
        """A file object that reads the text from `offset` (inside the first piece) to its end, piece by piece,
        for pyarrow's readers (`pa.PythonFile`): each read hands over (part of) a piece without copying it,
        the first read at most `first` bytes."""
        return _Stream(self, offset, first)

    def scanned(self) -> Scanned:
        """Wait for every piece and its scans; raise TransformError when the text is not UTF-8 or holds a NUL
        byte (the first invalid byte wins over any NUL, as a scan of the whole text would find them)."""
        with self._lock:
            if self._verdict is None:
                try:
                    self._verdict = self._judge()
                except BaseException as exc:  # the same verdict however often it is asked
                    self._verdict = exc
            if isinstance(self._verdict, BaseException):
                raise self._verdict
            return self._verdict

    def _judge(self) -> Scanned:
        scans = [s.result() for s in self._scans]
        bad = [(s.bad, s.bad_byte) for s in scans if s.bad >= 0]
        if scans and scans[0].lead:  # continuation bytes that begin the text finish nothing
            bad.append((0, scans[0].lead[0]))
        for k, scan in enumerate(scans):  # the bytes around each cut: a character begun in one piece ends in the next
            junction = scan.tail + (scans[k + 1].lead if k + 1 < len(scans) else b"")
            at = invalid_utf8(junction) if junction else None
            if at is not None:
                bad.append((self._bases[k] + self._ranges[k][1] - len(scan.tail) + at, junction[at]))
        if bad:
            first, byte = min(bad)
            raise TransformError(self.object_id, f"is not UTF-8 text (invalid byte 0x{byte:02x} at offset {first})")
        nul = [s.nul for s in scans if s.nul >= 0]
        if nul:
            raise TransformError(self.object_id, f"contains a NUL byte at offset {min(nul)}: binary data, "
                                                 "not CSV/JSON Lines text")
        crs = [s.cr for s in scans if s.cr >= 0]
        return Scanned(lf=sum(s.lf for s in scans), cr=min(crs) if crs else -1)

    def whole(self) -> Text:
        """The whole text in one piece of memory (joined once: the readers that need bytes' own methods)."""
        if self._whole is None:
            self._whole = b"".join(memoryview(self.piece(k)) for k in range(len(self._pieces)))  # type: ignore[arg-type]
        return self._whole

    def first_not(self, byte: int, start: int) -> int:
        """Offset of the first byte at or after `start` that is not `byte`, or -1 (looked for forward from `start`)."""
        for k in range(max(0, int(np.searchsorted(self._bases, start, side="right")) - 1), len(self._bases)):
            base, piece = self._bases[k], self.piece(k)
            assert piece is not None
            at = _first_other(np.frombuffer(piece, dtype=np.uint8)[max(0, start - base):], byte)
            if at >= 0:
                return max(base, start) + at
        return -1

    def last_not(self, byte: int, start: int) -> int:
        """Offset of the last byte at or after `start` that is not `byte`, or -1 (looked for back from the end)."""
        for k in range(len(self._bases) - 1, -1, -1):
            base, piece = self._bases[k], self.piece(k)
            assert piece is not None
            if base + len(piece) <= start:
                break
            view = np.frombuffer(piece, dtype=np.uint8)[max(0, start - base):]
            at = _first_other(view[::-1], byte)
            if at >= 0:
                return max(base, start) + len(view) - 1 - at
        return -1

    @overload
    def __getitem__(self, key: int) -> int: ...

    @overload
    def __getitem__(self, key: slice) -> bytes: ...

    def __getitem__(self, key: int | slice) -> int | bytes:
        """A byte (as an int) or a run of bytes (copied, across pieces) of the text, as bytes' own indexing gives."""
        if isinstance(key, int):
            at = key + self._size if key < 0 else key
            if not 0 <= at < self._size:
                raise IndexError(key)
            k = int(np.searchsorted(self._bases, at, side="right")) - 1
            return self.piece(k)[at - self._bases[k]]  # type: ignore[index]
        start, stop, step = key.indices(self._size)
        if step != 1:
            raise ValueError("pieces are sliced with step 1")
        parts, k = [], max(0, int(np.searchsorted(self._bases, start, side="right")) - 1)
        while start < stop and k < len(self._bases):
            base, piece = self._bases[k], self.piece(k)
            assert piece is not None
            lo, hi = start - base, min(stop - base, len(piece))
            if lo < hi:
                parts.append(piece.slice(lo, hi - lo).to_pybytes())
                start = base + hi
            k += 1
        return b"".join(parts)


class _Stream:
    """The text from an offset, read piece by piece (the file object `Pieces.stream` gives pyarrow)."""

    def __init__(self, pieces: Pieces, offset: int, first: int | None) -> None:
        self._pieces, self._k, self._at, self._first = pieces, 0, offset, first
        self.closed = False

    def read(self, n: int = -1) -> pa.Buffer | bytes:
        if self._first is not None:
            n, self._first = (self._first if n is None or n < 0 else min(n, self._first)), None
        while True:
            piece = self._pieces.piece(self._k)
            if piece is None:
                return b""
            if self._at < len(piece):  # never an empty read before the end: that would be the end
                size = len(piece) - self._at if n is None or n < 0 else min(n, len(piece) - self._at)
                out = piece.slice(self._at, size)
                self._at += size
                return out
            self._pieces.release(self._k)
            self._k, self._at = self._k + 1, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
