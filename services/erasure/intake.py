"""Intake: validate a request (API body or ErasureRequested event) and store it, idempotently.

Error messages name the field and the rule, and refer to subject ids by position only: ids never
appear in a response, a log line or an audit record.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.datasets import Dataset
from services.erasure.config import Config
from services.erasure.engine import subject_datasets
from services.erasure.model import ErasureRequest, State, new_request_id
from services.erasure.store import Store, client_key
from services.erasure.subjects import Subjects, fits, id_problem
from services.erasure.vault import seal

MAX_SUBJECTS = 1000


class InvalidRequest(ValueError):
    """The request cannot be accepted; `errors` lists every problem (value-free)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    subject_ids: list[str] = Field(min_length=1, max_length=MAX_SUBJECTS)
    datasets: list[str] | None = Field(default=None, min_length=1)
    reason: str = Field(min_length=1, max_length=2000)
    requested_by: str | None = Field(default=None, min_length=1, max_length=200)
    ticket: str | None = Field(default=None, max_length=200)
    client_request_id: str | None = Field(default=None, min_length=1, max_length=200)
    #: an earlier deadline than the platform's (epoch seconds); never later than received + erasureDeadlineDays
    deadline: float | None = Field(default=None, gt=0)


def parse(data: Any, datasets: Mapping[str, Dataset], cfg: Config | None = None,
          now: float | None = None) -> RequestBody:
    """Validate shape, scope and every subject id; raises InvalidRequest listing all problems.

    A `deadline` is accepted only with the config it must be checked against (the API passes it;
    the ErasureRequested contract has no deadline).
    """
    if not isinstance(data, dict):
        raise InvalidRequest(["the body must be a JSON object"])
    try:
        body = RequestBody.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_input=False, include_url=False):
            loc = ".".join(str(p) for p in e["loc"]) or "body"
            problems.append(f"{loc}: {e['msg']}" if e["type"] != "extra_forbidden" else f"{loc}: unknown field")
        raise InvalidRequest(problems) from None
    erasable = subject_datasets(datasets)
    scope = body.datasets or erasable
    problems = [f"datasets: {d!r} is not a dataset with subject columns (known: {', '.join(erasable)})"
                for d in scope if d not in erasable]
    scope_ok = not problems
    for i, sid in enumerate(body.subject_ids):
        why = id_problem(sid)
        if why:
            problems.append(f"subject_ids[{i}] {why}")
        elif scope_ok and not any(fits(sid, datasets[d]) for d in scope):
            kinds = ", ".join(f"{d}.{c} ({datasets[d].column(c).type})" for d in scope
                              for c in datasets[d].subject_columns)
            problems.append(f"subject_ids[{i}] is not a valid value of any subject column in scope: {kinds}")
    if body.deadline is not None:
        late = deadline_problem(body, cfg, time.time() if now is None else now) if cfg \
            else "deadline: not accepted here (file through the API to set one)"
        if late:
            problems.append(late)
    if problems:
        raise InvalidRequest(problems)
    return body.model_copy(update={"datasets": sorted(set(scope))})


def deadline_problem(body: RequestBody, cfg: Config, now: float) -> str | None:
    """Why the requested deadline cannot be kept (value-free), or None."""
    if body.deadline is None:
        return None
    if body.deadline <= now:
        return "deadline: must be in the future"
    if body.deadline > now + cfg.deadline_s:
        return f"deadline: must be within {round(cfg.deadline_s / 86400)} days (the platform's erasure deadline)"
    return None


def fingerprint(body: RequestBody, hashes: list[str]) -> str:
    shape = {"subjects": sorted(hashes), "datasets": body.datasets, "reason": body.reason,
             "requested_by": body.requested_by, "ticket": body.ticket,
             **({"deadline": body.deadline} if body.deadline is not None else {})}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def create(
    cfg: Config, store: Store, salt: bytes, body: RequestBody, *, caller: str | None, source: str,
    idempotency: str | None, now: float | None = None,
) -> tuple[ErasureRequest, bool]:
    """Store the request (RECEIVED) and its sealed ids; (request, created) — created is False for a duplicate."""
    now = time.time() if now is None else now
    problem = deadline_problem(body, cfg, now)
    if problem:
        raise InvalidRequest([problem])
    subjects = Subjects.of(body.subject_ids, salt)
    req = ErasureRequest(
        id=new_request_id(now), state=State.RECEIVED, received_at=now,
        deadline=now + cfg.deadline_s if body.deadline is None else body.deadline,
        datasets=list(body.datasets or []), reason=body.reason, requested_by=body.requested_by or caller or "unknown",
        subject_hashes=list(subjects.hashes), ticket=body.ticket, client_request_id=body.client_request_id,
        caller=caller, source=source, history=[{"at": round(now, 3), "state": "RECEIVED", "note": f"via {source}"}],
        approval={"required": True, "approved_by": None, "approved_at": None} if cfg.approval_required else None,
    )
    key = client_key(idempotency) if idempotency else None
    return store.create(req, seal(req.id, list(subjects.ids), cfg.kms_key_id), idempotency_key=key,
                        fingerprint=fingerprint(body, list(subjects.hashes)),
                        retention_s=cfg.record_retention_days * 86400)


def refuse(
    cfg: Config, store: Store, salt: bytes, data: Mapping[str, Any], errors: list[str], *, source: str,
    idempotency: str | None, now: float | None = None,
) -> tuple[ErasureRequest, bool]:
    """Record an invalid event-borne request as FAILED (hashes of whatever ids it carried), for the audit."""
    now = time.time() if now is None else now
    ids = [str(i) for i in data.get("subject_ids") or [] if isinstance(i, str | int) and not id_problem(str(i))]
    hashes = list(Subjects.of(ids, salt).hashes)
    req = ErasureRequest(
        id=new_request_id(now), state=State.FAILED, received_at=now, deadline=now + cfg.deadline_s,
        datasets=[d for d in data.get("datasets") or [] if isinstance(d, str)],
        reason=str(data.get("reason") or "")[:2000], requested_by=str(data.get("requested_by") or "unknown")[:200],
        subject_hashes=hashes, ticket=data.get("ticket"), client_request_id=data.get("client_request_id"),
        source=source, error="invalid request: " + "; ".join(errors)[:1000],
        history=[{"at": round(now, 3), "state": "RECEIVED", "note": f"via {source}"},
                 {"at": round(now, 3), "state": "FAILED", "note": "invalid request"}],
        result={"verified": False, "rows_removed": 0, "files_rewritten": 0, "announced": False},
    )
    key = client_key(idempotency) if idempotency else None
    return store.create(req, {}, idempotency_key=key, fingerprint="refused:" + ",".join(sorted(hashes)),
                        retention_s=cfg.record_retention_days * 86400)
