"""The one exception of the transform core: the whole object cannot be read."""

from __future__ import annotations

from contracts.failures import PermanentFailure


class TransformError(PermanentFailure, ValueError):
    """A raw object (or chunk) cannot be read at all; the message names the object and the reason.

    Row-level problems never raise: they go to quarantine. Raising is reserved for problems that
    make every row unreadable (encoding, corrupt gzip, header mismatch, raw copy gone): no retry can
    fix them, so the handler ends the object at once as ObjectFailed with this reason (no DLQ).
    """

    def __init__(self, object_id: str, reason: str) -> None:
        super().__init__(f"object {object_id}: {reason}")
        self.object_id = object_id
        self.reason = reason
