"""The erasure HTTP API (API Gateway HTTP API, IAM-authorised routes, Lambda proxy, payload 2.0).

  POST /erasure-requests                     file a request → 202 {id, state, deadline}
  GET  /erasure-requests?limit=&next=        page through requests, newest first
  GET  /erasure-requests/{id}                state, progress, deadline
  POST /erasure-requests/{id}/cancel         before rewriting starts → 200, else 409
  POST /erasure-requests/{id}/approve        four-eyes (etl:erasureApproval): someone else than the filer → 200
  GET  /erasure-requests/{id}/certificate    JSON, or Markdown with ?format=md / Accept: text/markdown
  POST /erasure-runs                         start a run now with every pending request → 202
Bad input gets a 4xx whose message says what is wrong; subject ids are never echoed.

Two front doors reach these routes: the IAM-authorised API (CLI, SigV4; IAM policy decides) and the
console's API (Cognito JWT authorizer), where the caller's Cognito groups decide (GROUP_RULES):
`erasure-filers` file, cancel and start runs, `erasure-approvers` approve, `erasure-readers` download
certificates, any console group reads requests. Refusals are value-free 403s. With approval required,
nobody approves their own request, whichever door they came through.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, NotFoundError, ServiceError

from contracts.datasets import load_datasets
from services.erasure import intake
from services.erasure.config import Config
from services.erasure.model import CANCELLABLE, ErasureRequest, State
from services.erasure.store import IdempotencyConflict, NotFound, Store
from services.erasure.vault import load_salt
from services.erasure.workspace import Workspace, certificate_key, stage_key

logger = Logger()
app = APIGatewayHttpResolver()
ID_RE = re.compile(r"^er-\d{14}-[0-9a-f]{10}$")
MAX_PAGE = 100


def _cfg() -> Config:
    return Config.from_environ()


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body, default=str),
                    headers=headers)


def _error(status: int, message: str, errors: list[str] | None = None) -> Response:
    return _json(status, {"message": message, **({"errors": errors} if errors else {})})


FILERS, APPROVERS, READERS = "erasure-filers", "erasure-approvers", "erasure-readers"
CONSOLE_GROUPS = frozenset({FILERS, APPROVERS, READERS})
#: what a console (JWT) caller needs per action: any one of these groups
GROUP_RULES = {"file": {FILERS}, "cancel": {FILERS}, "run": {FILERS}, "approve": {APPROVERS},
               "read": CONSOLE_GROUPS, "certificate": {READERS}}


def _claims() -> dict[str, Any] | None:
    """The JWT claims API Gateway's JWT authorizer verified, or None for an IAM-authorised call."""
    ctx = app.current_event.raw_event.get("requestContext", {})
    jwt = (ctx.get("authorizer") or {}).get("jwt")
    return (jwt.get("claims") or {}) if isinstance(jwt, dict) else None


def _groups(claims: dict[str, Any]) -> set[str]:
    """`cognito:groups`: a list, or as HTTP APIs pass arrays, one string `[a b]`."""
    raw = claims.get("cognito:groups") or []
    if isinstance(raw, str):
        raw = raw.strip("[]").replace(",", " ").split()
    return {str(g) for g in raw}


def _authorize(action: str) -> None:
    """Console callers need a group that allows the action; IAM callers were authorised by their policy."""
    claims = _claims()
    if claims is None:
        return
    if not _groups(claims) & GROUP_RULES[action]:
        need = " or ".join(sorted(GROUP_RULES[action]))
        raise ServiceError(403, f"your account may not {action} here: it needs the group {need} "
                                "(ask your console administrator)")


def _caller() -> str | None:
    claims = _claims()
    if claims is not None:
        user = claims.get("username") or claims.get("cognito:username") or claims.get("sub")
        return f"cognito:{user}" if user else None
    ctx = app.current_event.raw_event.get("requestContext", {})
    iam = (ctx.get("authorizer") or {}).get("iam") or {}
    return iam.get("userArn") or iam.get("callerId")


def _load(request_id: str) -> ErasureRequest:
    if not ID_RE.match(request_id):
        raise NotFoundError(f"no erasure request {request_id!r} (ids look like er-20250101120000-0a1b2c3d4e)")
    try:
        return Store.of(_cfg()).get(request_id)
    except NotFound:
        raise NotFoundError(f"no erasure request {request_id!r}") from None


def _progress(req: ErasureRequest) -> dict[str, Any] | None:
    if req.terminal or not req.run_id:
        return None
    try:
        run = Store.of(_cfg()).get_run(req.run_id)
    except NotFound:
        return None
    st = run.state
    stage = st.stages.get(stage_key(st.attempt, st.phase))
    total = len(stage.tasks) if stage else 0
    done = len(set(stage.tasks) & run.done) if stage else 0
    return {"run_id": run.id, "phase": st.phase, "attempt": st.attempt, "tasks_done": done, "tasks_total": total}


@app.post("/erasure-requests")
def file_request() -> Response:
    _authorize("file")
    cfg = _cfg()
    try:
        data = json.loads(app.current_event.body or "")
    except (json.JSONDecodeError, TypeError):
        return _error(400, "the body must be JSON: {\"subject_ids\": [...], \"reason\": \"...\", ...}")
    try:
        body = intake.parse(data, load_datasets(), cfg)
    except intake.InvalidRequest as exc:
        return _error(400, "invalid erasure request", exc.errors)
    store = Store.of(cfg)
    try:
        req, created = intake.create(cfg, store, load_salt(cfg.salt_parameter), body, caller=_caller(), source="api",
                                     idempotency=body.client_request_id)
    except IdempotencyConflict as exc:
        return _error(409, str(exc))
    logger.info("erasure request received" if created else "duplicate erasure request", request_id=req.id,
                subjects=len(req.subject_hashes), datasets=req.datasets)
    if created:
        maybe_start(cfg, store)
    return _json(202, {"id": req.id, "state": str(req.state), "deadline": req.deadline, "duplicate": not created},
                 {"Location": f"/erasure-requests/{req.id}"})


def maybe_start(cfg: Config, store: Store) -> None:
    """Enough requests waiting: ask for a run now instead of at the next schedule."""
    if cfg.run_queue_url and len(store.pending()) >= cfg.batch_size:
        from contracts import aws

        aws.client("sqs").send_message(QueueUrl=cfg.run_queue_url, MessageBody=json.dumps({"action": "start"}))


@app.get("/erasure-requests")
def list_requests() -> Response:
    _authorize("read")
    params = app.current_event.query_string_parameters or {}
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        raise BadRequestError("limit must be an integer") from None
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequestError(f"limit must be between 1 and {MAX_PAGE}")
    after = params.get("next")
    if after is not None and not ID_RE.match(after):
        raise BadRequestError("next must be the `next` value of a previous page")
    reqs, nxt = Store.of(_cfg()).list_requests(limit, after)
    now = time.time()
    return _json(200, {"items": [r.public(now) for r in reqs], "next": nxt})


@app.get("/erasure-requests/<request_id>")
def get_request(request_id: str) -> Response:
    _authorize("read")
    req = _load(request_id)
    return _json(200, {**req.public(time.time()), "progress": _progress(req)})


@app.post("/erasure-requests/<request_id>/cancel")
def cancel(request_id: str) -> Response:
    _authorize("cancel")
    cfg = _cfg()
    req = _load(request_id)

    def change(r: ErasureRequest) -> bool:
        if r.state not in CANCELLABLE:
            return False
        r.move(State.CANCELLED, time.time(), f"cancelled by {_caller() or 'unknown'}")
        return True

    req = Store.of(cfg).update(req.id, change, retention_s=cfg.record_retention_days * 86400)
    if req.state != State.CANCELLED:
        return _error(409, f"request {req.id} is {req.state}: it can be cancelled only before rewriting starts "
                           f"({', '.join(sorted(CANCELLABLE))})")
    logger.info("erasure request cancelled", request_id=req.id)
    return _json(200, req.public(time.time()))


@app.post("/erasure-requests/<request_id>/approve")
def approve(request_id: str) -> Response:
    _authorize("approve")
    cfg = _cfg()
    req = _load(request_id)
    approver = _caller() or "unknown"
    if req.awaiting_approval and req.caller and req.caller == approver:
        return _error(403, f"request {req.id} was filed by you: four eyes means someone else approves it")

    def change(r: ErasureRequest) -> bool:
        if not r.awaiting_approval:
            return False
        r.approve(approver, time.time())
        return True

    store = Store.of(cfg)
    req = store.update(req.id, change, retention_s=cfg.record_retention_days * 86400)
    if (req.approval or {}).get("approved_by") != approver:
        why = "approval is not required here" if not req.approval else (
            f"it was approved by {req.approval.get('approved_by')}" if req.approval.get("approved_by")
            else f"it is {req.state}")
        return _error(409, f"request {req.id} does not wait for approval: {why}")
    logger.info("erasure request approved", request_id=req.id)
    maybe_start(cfg, store)
    return _json(200, req.public(time.time()))


@app.get("/erasure-requests/<request_id>/certificate")
def get_certificate(request_id: str) -> Response:
    _authorize("certificate")
    cfg = _cfg()
    req = _load(request_id)
    params = app.current_event.query_string_parameters or {}
    accept = (app.current_event.headers or {}).get("accept", "")
    markdown = params.get("format") == "md" or "text/markdown" in accept
    data = Workspace(cfg.erasure_bucket).get_bytes(certificate_key(req.id, "md" if markdown else "json"))
    if data is None:
        why = "it was cancelled" if req.state == State.CANCELLED else f"it is {req.state}"
        raise NotFoundError(f"request {req.id} has no certificate: {why} (certificates are issued once verified)")
    return Response(status_code=200, content_type="text/markdown" if markdown else "application/json",
                    body=data.decode())


@app.post("/erasure-runs")
def start_run() -> Response:
    _authorize("run")
    cfg = _cfg()
    from contracts import aws

    aws.client("sqs").send_message(QueueUrl=cfg.run_queue_url, MessageBody=json.dumps({"action": "start"}))
    pending = len(Store.of(cfg).pending())
    logger.info("run requested", pending=pending)
    return _json(202, {"message": "a run starts now", "pending": pending})
