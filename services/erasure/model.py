"""Request states and records. Records hold salted hashes of subjects, never the ids themselves."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    RECEIVED = "RECEIVED"
    SCHEDULED = "SCHEDULED"
    FINDING = "FINDING"
    ERASING = "ERASING"
    VERIFYING = "VERIFYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})
#: a request may be cancelled until rewriting starts
CANCELLABLE = frozenset({State.RECEIVED, State.SCHEDULED, State.FINDING})
#: the only moves a request makes (VERIFYING → ERASING is a retry after a verification found rows)
TRANSITIONS: dict[State, frozenset[State]] = {
    State.RECEIVED: frozenset({State.SCHEDULED, State.CANCELLED, State.FAILED}),
    State.SCHEDULED: frozenset({State.FINDING, State.CANCELLED, State.FAILED}),
    State.FINDING: frozenset({State.ERASING, State.CANCELLED, State.FAILED}),
    State.ERASING: frozenset({State.VERIFYING, State.FAILED}),
    State.VERIFYING: frozenset({State.COMPLETED, State.FAILED, State.ERASING}),
    State.COMPLETED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
}


class TransitionError(ValueError):
    """A request cannot move from its state to the one asked for; the message says both."""


def new_request_id(now: float | None = None) -> str:
    """Time-sortable and unguessable: `er-YYYYmmddHHMMSS-<10 hex>`."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"er-{stamp}-{secrets.token_hex(5)}"


def new_run_id(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"run-{stamp}-{secrets.token_hex(4)}"


@dataclass
class ErasureRequest:
    id: str
    state: State
    received_at: float
    deadline: float
    datasets: list[str]
    reason: str
    requested_by: str
    subject_hashes: list[str]
    ticket: str | None = None
    client_request_id: str | None = None
    caller: str | None = None
    source: str = "api"  # api | event
    run_id: str | None = None
    error: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)  # rows removed, files rewritten, verified …
    #: four-eyes approval when the env requires it: {"required": True, "approved_by": …, "approved_at": …}
    approval: dict[str, Any] | None = None
    version: int = 0

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def awaiting_approval(self) -> bool:
        return bool(self.approval and self.approval.get("required") and not self.approval.get("approved_by"))

    @property
    def pending(self) -> bool:
        """What the next run takes: received, and approved when approval is required."""
        return self.state == State.RECEIVED and not self.awaiting_approval

    def approve(self, by: str, at: float) -> None:
        """Record the second pair of eyes (the run takes the request from now on) in the audit history."""
        self.approval = {**(self.approval or {"required": True}), "approved_by": by, "approved_at": round(at, 3)}
        self.history.append({"at": round(at, 3), "state": str(self.state), "note": f"approved by {by}"})

    def move(self, to: State, at: float, note: str = "") -> None:
        """Change state (checked against TRANSITIONS) and append to the audit history."""
        if to not in TRANSITIONS[self.state]:
            raise TransitionError(f"request {self.id} cannot go from {self.state} to {to}")
        self.state = to
        self.history.append({"at": round(at, 3), "state": str(to), **({"note": note} if note else {})})

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ErasureRequest:
        return cls(**{**data, "state": State(data["state"])})

    def public(self, now: float) -> dict[str, Any]:
        """What the API returns: state, progress, deadline; hashes, never ids."""
        data = self.to_json()
        data.pop("version", None)
        data["deadline_in_days"] = round((self.deadline - now) / 86400, 2)
        data["subject_count"] = len(self.subject_hashes)
        return data
