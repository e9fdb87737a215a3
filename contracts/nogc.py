"""Python's cyclic garbage collector paused around bulk Arrow work (transform, compaction).

That work makes thousands of short-lived pyarrow wrappers and no reference cycles worth collecting;
the collections it triggers cost about 3% of transform's CPU (profile of TPC-H SF1 orders,
bench/transform_bench.py) and about 2% of compaction's. Reference counting still frees everything as usual.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic GC for the block, and re-enable it after only if it was enabled before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
