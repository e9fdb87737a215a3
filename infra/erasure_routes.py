"""The erasure API's routes, served twice over the same `erasure-api` function: by the IAM-authorised
HTTP API (infra/erasure.py) and by the console's Cognito-authorised one (infra/console.py)."""

from __future__ import annotations

ROUTES = (
    "POST /erasure-requests",
    "GET /erasure-requests",
    "GET /erasure-requests/{id}",
    "POST /erasure-requests/{id}/cancel",
    "POST /erasure-requests/{id}/approve",
    "GET /erasure-requests/{id}/certificate",
    "POST /erasure-runs",
)
