"""glibc's allocator tuned for a process that moves whole row groups through memory several times.

Arrow's `system` pool (as deployed: it hands freed memory back, a lower peak RSS than mimalloc or
jemalloc) allocates through glibc, which serves every buffer above its mmap threshold (128 KiB, rising
dynamically to at most 32 MiB) with a fresh `mmap` and unmaps it on free. A compaction reads, sorts,
spills, merges and encodes each row in buffers of megabytes, so every pass faulted its pages in anew:
about 140,000 minor faults and 0.6 s of kernel time for 1,000 files of TPC-H SF1 orders. With those
buffers served from the heap and the heap trimmed only at phase boundaries (`release_memory`), freed
pages are reused instead of re-faulted: about 80,000 faults and 0.35 s, the same peak RSS.

Only for a rewrite on one thread: with worker threads, glibc gives each its own arena, and the heap
the workers kept from pass 1 (not trimmed on free any more) pushed the merge's peak RSS from 1.0x to
1.3x of the single-threaded one (321 -> 409 MiB); with one shared arena (M_ARENA_MAX=1) the peak was
back but the lock contention ate the gain. So threaded rewrites keep glibc's defaults.
"""

from __future__ import annotations

import contextlib
import ctypes

import pyarrow as pa

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: buffers up to this size come from the heap (glibc caps the mmap threshold at HEAP_MAX: 32 MiB on 64-bit)
MMAP_THRESHOLD = 32 * 2**20
#: the heap is not trimmed on free below this; `release_memory` trims it explicitly
TRIM_THRESHOLD = 2**30


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to tune or trim
        return None


def tune_allocator() -> bool:
    """Serve large buffers from the heap and trim it only when asked (idempotent, process-wide).

    True when glibc accepted both settings (it silently refuses an mmap threshold above 32 MiB).
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_memory() -> None:
    """Hand memory freed by Arrow (and glibc's heap) back to the OS, so the next phase starts low."""
    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)
