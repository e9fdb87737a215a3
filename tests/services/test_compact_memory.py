"""The allocator tuning of rewrites (services/compact/memory.py): glibc accepts it, and workers give back."""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import threading

import pyarrow as pa
import pytest

from services.compact.memory import MMAP_THRESHOLD, Workers, release_memory, tune_allocator


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_accepts_the_allocator_thresholds_and_buffers_are_freed_after() -> None:
    # glibc refuses (returns 0, changes nothing) an mmap threshold above HEAP_MAX/2 = 32 MiB on 64-bit
    assert MMAP_THRESHOLD <= 32 * 2**20
    assert tune_allocator() is True
    assert tune_allocator() is True  # idempotent: every bin calls it
    pool = pa.default_memory_pool()
    gc.collect()  # or a collection during the test frees earlier tests' Arrow objects, and `before` drifts
    before = pool.bytes_allocated()  # what other modules of this process hold (small cached arrays)
    buffers = [pa.allocate_buffer(4 * 2**20) for _ in range(8)]  # from the heap now, not fresh mmaps
    # the pool holds them (not `before +`: an earlier test's arrays may be freed meanwhile, and once were)
    assert pool.bytes_allocated() >= 32 * 2**20
    del buffers
    release_memory()
    assert pool.bytes_allocated() <= before, "every buffer went back to the pool"


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_workers_give_back_the_heap_their_threads_kept() -> None:
    """With the heap tuned, a worker's freed buffer stays resident (its arena's top) until `release`."""
    assert tune_allocator() is True
    size = 24 * 2**20  # under the mmap threshold: from the worker's own arena, not a mapping of its own
    both = threading.Barrier(2)

    def churn() -> None:
        both.wait(10)  # one job on each worker thread
        buffer = pa.allocate_buffer(size)
        ctypes.memset(buffer.address, 1, size)  # touched: resident
        del buffer  # freed by the worker: the top of its arena, kept (no trim below 1 GiB)

    with Workers(2) as workers:
        for job in [workers.submit(churn) for _ in range(2)]:
            job.result()
        kept = _rss()
        workers.release()
        # at least a buffer's worth: in a process where earlier pools left arenas behind, a worker may be
        # handed one whose free memory sits below live blocks, which only `malloc_trim` can reach
        assert kept - _rss() >= 0.9 * size
        assert workers.submit(lambda: "still usable").result() == "still usable"
