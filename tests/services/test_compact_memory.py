"""The allocator tuning of single-threaded rewrites (services/compact/memory.py) is accepted by glibc."""

from __future__ import annotations

import platform

import pyarrow as pa
import pytest

from services.compact.memory import MMAP_THRESHOLD, release_memory, tune_allocator


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_accepts_the_allocator_thresholds_and_buffers_are_freed_after() -> None:
    # glibc refuses (returns 0, changes nothing) an mmap threshold above HEAP_MAX/2 = 32 MiB on 64-bit
    assert MMAP_THRESHOLD <= 32 * 2**20
    assert tune_allocator() is True
    assert tune_allocator() is True  # idempotent: every single-threaded bin calls it
    pool = pa.default_memory_pool()
    before = pool.bytes_allocated()  # what other modules of this process hold (small cached arrays)
    buffers = [pa.allocate_buffer(4 * 2**20) for _ in range(8)]  # from the heap now, not fresh mmaps
    assert pool.bytes_allocated() >= before + 32 * 2**20
    del buffers
    release_memory()
    assert pool.bytes_allocated() == before
