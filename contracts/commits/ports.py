"""What the committer needs from storage, as protocols: the lake bucket, the state table, the catalog, a clock.

The AWS implementations are in `s3`, `dynamodb` and `glue`; tests/fakes/commit_backends.py has
in-memory ones with the same conditions.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Protocol

from contracts.commits.model import ObjectStat
from contracts.datasets import Dataset

#: a state-table item: only strings and ints
Item = dict[str, str | int]


class ObjectStore(Protocol):
    """The lake bucket. Keys are relative to it; deleting always removes every version."""

    def put(self, key: str, data: bytes) -> None: ...
    def stat(self, key: str) -> ObjectStat | None: ...
    def copy(self, src: str, dst: str) -> None: ...  # raises ObjectNotFound
    def purge(self, key: str) -> int: ...
    def purge_prefix(self, prefix: str) -> int: ...


class StateTable(Protocol):
    """A pk/sk table with strongly consistent reads and version-conditional puts."""

    def get(self, pk: str, sk: str) -> Item | None: ...
    def put(self, item: Item) -> None: ...
    def put_if_version(self, item: Item, expected: int | None) -> None: ...  # raises ConditionFailed
    def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Item]: ...  # any number of keys
    def put_many(self, items: Sequence[Item]) -> None: ...  # unconditional, not atomic, any number of items
    def query_until(self, pk: str, sk_max: str) -> Iterable[Item]: ...
    def delete(self, pk: str, sk: str) -> None: ...


class Catalog(Protocol):
    """Glue partitions: the location is the only thing commits change after creation."""

    def location(self, dataset: Dataset, values: Sequence[str]) -> str | None: ...
    def create(self, dataset: Dataset, values: Sequence[str], location: str) -> bool: ...
    def set_location(self, dataset: Dataset, values: Sequence[str], location: str) -> None: ...
    def locations(self, dataset: Dataset, values: Sequence[Sequence[str]]) -> list[str | None]: ...
    def create_many(self, dataset: Dataset, entries: Sequence[tuple[Sequence[str], str]]) -> list[bool]: ...

    # like `create` for each entry (False: it exists); any number of entries


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
