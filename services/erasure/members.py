"""The subjects of a run's member requests, read from the vault (never stored with the run).

Both the run (FIND, purge, verification) and its worker tasks need them; they are unsealed per
use, so no subject id outlives the invocation that needed it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.erasure.store import NotFound, Store
from services.erasure.subjects import Subjects
from services.erasure.vault import unseal

#: why a request whose subject ids are gone fails (value-free: no id is known any more)
VAULT_MISSING = "subject ids no longer available: vault item missing"


@dataclass
class RunSubjects:
    """Per dataset, the subjects of the run's requests whose scope includes it."""

    by_dataset: dict[str, Subjects] = field(default_factory=dict)
    owners: dict[str, set[str]] = field(default_factory=dict)  # subject hash -> request ids
    #: open requests whose vault item is gone (the TTL backstop fired): nothing of theirs can be
    #: searched, so they can never be certified; they end FAILED with VAULT_MISSING
    missing: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        """Every id of the run (to redact them from texts that may quote a subject-keyed path)."""
        return [i for s in self.by_dataset.values() for i in s.ids]


def run_subjects(store: Store, request_ids: Iterable[str], salt: bytes) -> RunSubjects:
    """The run's subjects per dataset, from the vault of each member request still open."""
    out = RunSubjects()
    ids_by_dataset: dict[str, list[str]] = {}
    for rid in request_ids:
        item = store.vault_item(rid)
        if item is None:  # normal once terminal (deleted with that transition); else lost
            with contextlib.suppress(NotFound):
                if not store.get(rid).terminal:
                    out.missing.append(rid)
            continue
        req = store.get(rid)
        ids = unseal(rid, item)
        for h in Subjects.of(ids, salt).hashes:
            out.owners.setdefault(h, set()).add(rid)
        for ds in req.datasets:
            ids_by_dataset.setdefault(ds, []).extend(ids)
    out.by_dataset = {ds: Subjects.of(ids, salt) for ds, ids in ids_by_dataset.items()}
    return out
