"""The per-partition state item and the normalised request: internal to the committer.

The item (`pk = p#<dataset>#<partition path>`, `sk = state`) holds the generation, the manifest and
at most one pending intent, written only with version-conditional puts (see committer.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts import lake
from contracts.commits.model import NewFile, PartitionRef
from contracts.commits.ports import Item
from contracts.datasets import Dataset

STATE_SK = "state"
GC_PK = "gc"
OP_SK_PREFIX = "op#"


@dataclass(frozen=True)
class Staged:
    name: str  # committed name
    staged: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class Pending:
    """A committed intent: self-contained, so any claimant can roll it forward."""

    op_id: str
    digest: str
    fingerprint: str
    mode: str  # "inplace" (copy one file into the live generation) | "newgen" | "sync" (catalog only)
    src: int
    dst: int
    remove: tuple[str, ...]
    add: tuple[Staged, ...]
    attempt: str
    expires: float

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in ("op_id", "digest", "fingerprint", "mode", "src", "dst", "attempt")}
        return data | {
            "expires": self.expires,
            "remove": list(self.remove),
            "add": [[s.name, s.staged, s.rows, s.bytes] for s in self.add],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Pending:
        add = tuple(Staged(*entry) for entry in d["add"])
        rest = {k: v for k, v in d.items() if k not in ("add", "remove")}
        return cls(**rest, remove=tuple(d["remove"]), add=add)


@dataclass(frozen=True)
class State:
    version: int | None  # None: no item yet
    gen: int = 0
    files: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # name -> (rows, bytes)
    pending: Pending | None = None

    def to_body(self) -> str:
        files = {n: list(v) for n, v in sorted(self.files.items())}
        pending = self.pending.to_json() if self.pending else None
        return json.dumps({"gen": self.gen, "files": files, "pending": pending}, separators=(",", ":"))

    @classmethod
    def from_item(cls, item: Item | None) -> State:
        if item is None:
            return cls(version=None)
        body = json.loads(str(item["body"]))
        pending = Pending.from_json(body["pending"]) if body["pending"] else None
        files = {n: (int(r), int(b)) for n, (r, b) in body["files"].items()}
        return cls(int(item["version"]), body["gen"], files, pending)

    def after(self, p: Pending) -> State:
        """The state once `p` is applied: the only place a manifest changes."""
        files = {n: v for n, v in self.files.items() if n not in p.remove}
        files.update({s.name: (s.rows, s.bytes) for s in p.add})
        return State(self.version, p.dst, files, None)


@dataclass(frozen=True)
class Spec:
    """What the caller asked for, normalised; the fingerprint detects an op id reused for another op."""

    op_id: str
    kind: str  # "append" | "replace" | "sync"
    remove: tuple[str, ...]
    add: tuple[NewFile, ...]

    @property
    def digest(self) -> str:
        return lake.op_digest(self.op_id)

    @property
    def fingerprint(self) -> str:
        shape = {"kind": self.kind, "remove": sorted(self.remove), "add": [[f.name, f.rows] for f in self.add]}
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:32]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(lake.committed_name(self.digest, i) for i in range(len(self.add)))


@dataclass(frozen=True)
class Attempt:
    id: str
    deadline: float


@dataclass(frozen=True)
class Where:
    """A validated ref with everything needed to name its keys and its catalog partition."""

    ref: PartitionRef
    dataset: Dataset
    path: str

    @property
    def pk(self) -> str:
        return f"p#{self.ref.dataset}#{self.path}"

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self.ref.values[n] for n in self.dataset.partition_names)
