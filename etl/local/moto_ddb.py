"""The emulator's DynamoDB, made safe under concurrent clients: one lock around item reads and writes.

moto's TransactWriteItems backs up each table it touches with `copy.deepcopy` and restores the
copy if the transaction fails. With several function hosts writing at once, another request
mutating the table during that copy raised `RuntimeError: dictionary changed size during
iteration` (a 500 to the client), and a write that landed between the backup and a rollback was
silently undone. Real DynamoDB serialises conflicting writes per item; locally one lock over the
item writes gives the same observable behaviour for writes (each atomic, none lost).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

#: writers only: reads stay concurrent (as in stock moto), so a short read never waits behind a transaction's
#: whole-table backup copy
ITEM_OPERATIONS = ("put_item", "update_item", "delete_item", "transact_write_items")
_lock = threading.RLock()
_patched: list[tuple[Any, str, Any]] = []


def install() -> None:
    """Serialise the item writes of moto's DynamoDB backend in this process (idempotent)."""
    if _patched:
        return
    from moto.dynamodb.models import DynamoDBBackend

    for name in ITEM_OPERATIONS:
        original = DynamoDBBackend.__dict__.get(name)
        if original is None:
            continue

        @functools.wraps(original)
        def locked(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with _lock:
                return __original(*args, **kwargs)

        _patched.append((DynamoDBBackend, name, original))
        setattr(DynamoDBBackend, name, locked)


def uninstall() -> None:
    while _patched:
        owner, name, original = _patched.pop()
        setattr(owner, name, original)
