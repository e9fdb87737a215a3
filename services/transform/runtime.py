"""Process-wide pyarrow settings of the transform's function, applied once at cold start by the handler.

The allocator: a transform allocates and frees a few large buffers per object (the raw text, each
block's strings, the typed columns, the sorted copy, each file's pages). Under pyarrow's default
allocator (mimalloc) that cost 0.4-0.8 s of kernel time per TPC-H SF1 object (173 MB), varying
from run to run: freed pages are handed back and zero-filled again on the next allocation. glibc's
malloc, pyarrow's "system" pool, cost about 0.5 s, steadily, for 0.05 s more user time
(docs/design/transform-performance.md).
"""

from __future__ import annotations

import pyarrow as pa


def configure() -> None:
    """Use the system allocator for every later pyarrow allocation of this process."""
    pa.set_memory_pool(pa.system_memory_pool())
