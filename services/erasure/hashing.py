"""Salted hashes of subject ids: the only form in which a subject appears in logs, events and audit.

HMAC-SHA256 with a secret salt, not a bare hash: subject ids are often small integers, and an
unsalted (or public-salt) hash of every integer up to 10^9 is one afternoon of brute force.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

MIN_SALT_BYTES = 16
PREFIX = "hmac-sha256:"


class SaltError(ValueError):
    """The salt is missing or too short to protect small id spaces."""


def check_salt(salt: bytes) -> bytes:
    if len(salt) < MIN_SALT_BYTES:
        raise SaltError(f"the subject hash salt must be at least {MIN_SALT_BYTES} bytes (got {len(salt)})")
    return salt


def subject_hash(subject_id: str, salt: bytes) -> str:
    """`hmac-sha256:<hex>` of the subject id as given (stripped); stable for a given salt."""
    digest = hmac.new(check_salt(salt), subject_id.strip().encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest


def redact(text: str, subject_ids: Iterable[str], salt: bytes) -> str:
    """Replace whole-token occurrences of subject ids (e.g. in an error message) by their hashes."""
    ids = sorted({i.strip() for i in subject_ids if i.strip()}, key=len, reverse=True)
    if not ids:
        return text
    pattern = re.compile("|".join(rf"(?<![0-9A-Za-z]){re.escape(i)}(?![0-9A-Za-z])" for i in ids))
    return pattern.sub(lambda m: subject_hash(m.group(0), salt), text)


def salt_id(salt: bytes) -> str:
    """A public fingerprint of the salt, so a certificate says which salt its hashes were made with."""
    return hashlib.sha256(b"etl-erasure-salt-id\0" + check_salt(salt)).hexdigest()[:16]
