"""What API Gateway's JWT authorizer checks, done on loopback for routes with `authorizationType: JWT`.

The token from the identity source (`Authorization: Bearer …`) must be signed by a key of the
issuer's JWKS (RS256), come from the configured issuer, name one of the audiences (`aud`, or
`client_id` for Cognito access tokens) and be within its validity. Locally the issuer is the
emulated Cognito user pool: its JWKS is fetched from moto (`<endpoint>/<pool id>/.well-known/jwks.json`),
so a forged or expired token is refused exactly as on AWS. Claims reach the function the way HTTP
APIs pass them: strings, arrays as `[a b]`. Verification is joserfc's (moto's own JWT library).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

LEEWAY_S = 5


class Unauthorized(Exception):
    """The request carries no acceptable token; API Gateway answers 401 {"message": "Unauthorized"}."""


def jwks_url(issuer: str) -> str:
    """Where the issuer publishes its keys; an AWS Cognito issuer is read from the emulator locally."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    parts = urlsplit(issuer)
    if endpoint and parts.hostname and parts.hostname.startswith("cognito-idp."):
        return f"{endpoint.rstrip('/')}{parts.path}/.well-known/jwks.json"
    return f"{issuer.rstrip('/')}/.well-known/jwks.json"


@lru_cache(maxsize=8)
def _keys(url: str) -> KeySet:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return KeySet.import_key_set(json.loads(resp.read()))


def _flatten(value: Any) -> str:
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    return value if isinstance(value, str) else json.dumps(value)


def verify(headers: dict[str, str], config: dict[str, Any], now: float | None = None) -> dict[str, str]:
    """Claims of a valid token for an authorizer `{"issuer", "audiences", "identity_source"}`; else Unauthorized."""
    source = (config.get("identity_source") or "$request.header.Authorization").rsplit(".", 1)[-1].lower()
    raw = {k.lower(): v for k, v in headers.items()}.get(source, "").strip()
    if raw.lower().startswith("bearer "):
        raw = raw[7:].strip()
    if not raw:
        raise Unauthorized("no token")
    try:
        token = jwt.decode(raw, _keys(jwks_url(config["issuer"])), algorithms=["RS256"])
    except (JoseError, ValueError) as exc:
        raise Unauthorized(f"bad token: {type(exc).__name__}") from None
    claims = token.claims
    now = time.time() if now is None else now
    if claims.get("iss") != config["issuer"]:
        raise Unauthorized("wrong issuer")
    audience = claims.get("aud", claims.get("client_id"))
    audiences = audience if isinstance(audience, list) else [audience]
    if not set(audiences) & set(config.get("audiences") or []):
        raise Unauthorized("wrong audience")
    if "exp" not in claims or float(claims["exp"]) < now - LEEWAY_S:
        raise Unauthorized("expired")
    if float(claims.get("nbf", 0)) > now + LEEWAY_S:
        raise Unauthorized("not yet valid")
    return {k: _flatten(v) for k, v in claims.items()}
