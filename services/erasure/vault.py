"""Where subject ids wait for their run: one state-table item per request, gone once it ends.

DynamoDB encrypts every item at rest; with a KMS key configured (`ERASURE_KMS_KEY_ID`) the ids are
also encrypted by KMS under an encryption context naming the request, so reading them takes
kms:Decrypt, which only the run and worker functions have. The item is deleted in the same
transaction that makes the request terminal (store.py): after that the platform holds no clear id.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from typing import Any

from botocore.exceptions import ClientError

from contracts import aws
from services.erasure.hashing import check_salt

KMS_PLAINTEXT_LIMIT = 4096


def _context(request_id: str) -> dict[str, str]:
    return {"erasure-request": request_id}


def seal(request_id: str, ids: list[str], kms_key_id: str = "") -> dict[str, Any]:
    """The vault item's attributes for these ids (without pk/sk)."""
    payload = json.dumps(ids, separators=(",", ":")).encode()
    if not kms_key_id:
        return {"kind": {"S": "plain"}, "payload": {"S": payload.decode()}}
    kms = aws.client("kms")
    chunks = [payload[i : i + KMS_PLAINTEXT_LIMIT] for i in range(0, len(payload), KMS_PLAINTEXT_LIMIT)]
    blobs = [
        base64.b64encode(kms.encrypt(KeyId=kms_key_id, Plaintext=c, EncryptionContext=_context(request_id))
                         ["CiphertextBlob"]).decode()
        for c in chunks
    ]
    return {"kind": {"S": "kms"}, "payload": {"S": json.dumps(blobs)}}


def unseal(request_id: str, item: dict[str, Any]) -> list[str]:
    kind, payload = item["kind"]["S"], item["payload"]["S"]
    if kind == "plain":
        return list(json.loads(payload))
    kms = aws.client("kms")
    plain = b"".join(
        kms.decrypt(CiphertextBlob=base64.b64decode(b), EncryptionContext=_context(request_id))["Plaintext"]
        for b in json.loads(payload)
    )
    return list(json.loads(plain))


_SALT: dict[str, bytes] = {}


def load_salt(parameter: str) -> bytes:
    """The subject-hash salt: env `ERASURE_SUBJECT_SALT` (tests, benchmark) or an SSM SecureString.

    The parameter is created on first use with 32 random bytes (a conditional put, so concurrent
    first uses agree); it never passes through Pulumi state, stack config or an environment variable.
    """
    direct = os.environ.get("ERASURE_SUBJECT_SALT")
    if direct:
        return check_salt(direct.encode())
    if not parameter:
        raise RuntimeError("no subject-hash salt: set ERASURE_SALT_PARAMETER (or ERASURE_SUBJECT_SALT)")
    if parameter in _SALT:
        return _SALT[parameter]
    ssm = aws.client("ssm")
    try:
        value = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
            raise
        try:
            ssm.put_parameter(Name=parameter, Value=secrets.token_hex(32), Type="SecureString", Overwrite=False,
                              Description="Salt of the erasure service's subject hashes (HMAC-SHA256). Never rotate: "
                                          "certificates name subjects by these hashes.")
        except ClientError as put_exc:
            if put_exc.response.get("Error", {}).get("Code") != "ParameterAlreadyExists":
                raise
        value = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    _SALT[parameter] = check_salt(value.encode())
    return _SALT[parameter]
