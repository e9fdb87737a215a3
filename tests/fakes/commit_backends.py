"""In-memory backends of the partition-commit protocol (`contracts.commits`: ObjectStore, StateTable,
Catalog, Clock), with the conditions of S3, DynamoDB and Glue the protocol relies on.

Shared by the commit property test (which wraps each backend in its fault-injecting proxy and makes
the clock's sleep a scheduling point) and the compaction service tests (which run the real protocol
on them), so both exercise the same semantics. Helpers beyond the protocols (`live`, `count`, `get`)
are for assertions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from contracts.commits import ConditionFailed, Item, ObjectNotFound, ObjectStat
from contracts.datasets import Dataset


class FakeClock:
    """Time moves only when a test moves it (`t`) or the code under test sleeps."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class MemStore:
    """A versioned bucket: every put adds a version (None = delete marker); purge removes them all."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.versions: dict[str, list[tuple[bytes | None, float]]] = {}

    def put(self, key: str, data: bytes) -> None:
        self.versions.setdefault(key, []).append((bytes(data), self.clock.now()))

    def current(self, key: str) -> bytes | None:
        versions = self.versions.get(key)
        return versions[-1][0] if versions else None

    def get(self, key: str) -> bytes:
        """The current version's bytes; KeyError when there is none (as GetObject's NoSuchKey)."""
        data = self.current(key)
        if data is None:
            raise KeyError(key)
        return data

    def stat(self, key: str) -> ObjectStat | None:
        data = self.current(key)
        return None if data is None else ObjectStat(len(data), self.versions[key][-1][1])

    def copy(self, src: str, dst: str) -> None:
        data = self.current(src)
        if data is None:
            raise ObjectNotFound(src)
        self.put(dst, data)

    def purge(self, key: str) -> int:
        return len(self.versions.pop(key, []))

    def purge_prefix(self, prefix: str) -> int:
        return sum(self.purge(k) for k in [k for k in self.versions if k.startswith(prefix)])

    def live(self, prefix: str) -> dict[str, bytes]:
        """Current objects under `prefix`: what a reader listing the prefix sees."""
        found = {k: self.current(k) for k in self.versions if k.startswith(prefix)}
        return {k: v for k, v in found.items() if v is not None}

    def count(self, prefix: str) -> int:
        """Stored versions under `prefix`, current or not: what a purge must leave at zero."""
        return sum(len(v) for k, v in self.versions.items() if k.startswith(prefix))


class MemTable:
    """The state table: items by (pk, sk), conditional puts on `version` as DynamoDB evaluates them."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Item] = {}

    def get(self, pk: str, sk: str) -> Item | None:
        item = self.items.get((pk, sk))
        return dict(item) if item else None

    def put(self, item: Item) -> None:
        self.items[(str(item["pk"]), str(item["sk"]))] = dict(item)

    def put_if_version(self, item: Item, expected: int | None) -> None:
        have = self.items.get((str(item["pk"]), str(item["sk"])))
        if (have is None) != (expected is None) or (have is not None and have["version"] != expected):
            raise ConditionFailed(f"{item['pk']}: version is not {expected}")
        self.put(item)

    def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Item]:
        return {k: dict(self.items[k]) for k in keys if k in self.items}

    def put_many(self, items: Sequence[Item]) -> None:
        for item in items:
            self.put(item)

    def query_until(self, pk: str, sk_max: str) -> list[Item]:
        return [dict(v) for (p, s), v in sorted(self.items.items()) if p == pk and s <= sk_max]

    def delete(self, pk: str, sk: str) -> None:
        self.items.pop((pk, sk), None)


class MemCatalog:
    """Glue partitions: create is idempotent (False if it exists), moving a missing one fails as in Glue."""

    def __init__(self) -> None:
        self.parts: dict[tuple[str, tuple[str, ...]], str] = {}

    def location(self, dataset: Dataset, values: Iterable[str]) -> str | None:
        return self.parts.get((dataset.name, tuple(values)))

    def create(self, dataset: Dataset, values: Iterable[str], location: str) -> bool:
        key = (dataset.name, tuple(values))
        if key in self.parts:
            return False
        self.parts[key] = location
        return True

    def locations(self, dataset: Dataset, values: Sequence[Sequence[str]]) -> list[str | None]:
        return [self.location(dataset, v) for v in values]

    def create_many(self, dataset: Dataset, entries: Sequence[tuple[Sequence[str], str]]) -> list[bool]:
        return [self.create(dataset, values, location) for values, location in entries]

    def set_location(self, dataset: Dataset, values: Iterable[str], location: str) -> None:
        key = (dataset.name, tuple(values))
        if key not in self.parts:
            raise KeyError(f"no partition {key}")
        self.parts[key] = location
