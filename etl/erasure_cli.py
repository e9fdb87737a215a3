"""`etl erasure …` — file right-to-be-forgotten requests, follow them, cancel them, keep the certificate.

Talks to the erasure HTTP API: on AWS, requests are signed with SigV4 (service `execute-api`) by
botocore from the standard credential chain (env, profile, SSO, instance role); locally, the same
handler is served on loopback by the local platform. Subject ids go in the request body only.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from contracts import naming
from etl import targets

app = typer.Typer(help=__doc__, no_args_is_help=True)
console = Console()
err = Console(stderr=True)
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment: `local` or a deployed env (dev, prod…).")]
STATES = ("RECEIVED", "SCHEDULED", "FINDING", "ERASING", "VERIFYING", "COMPLETED")
FINAL = {"COMPLETED", "FAILED", "CANCELLED"}
COLOURS = {"COMPLETED": "green", "FAILED": "red", "CANCELLED": "yellow"}


class ApiError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body
        message = body.get("message") if isinstance(body, dict) else str(body)
        errors = body.get("errors", []) if isinstance(body, dict) else []
        super().__init__(f"HTTP {status}: {message}" + "".join(f"\n  - {e}" for e in errors))


@dataclass
class ErasureApi:
    """A tiny client of the erasure API; `sign` is set for AWS (SigV4), None on loopback."""

    base_url: str
    region: str | None = None
    sign: bool = False

    def call(self, method: str, path: str, body: Any = None, *, accept: str = "application/json") -> tuple[int, Any]:
        url = self.base_url.rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": accept, **({"Content-Type": "application/json"} if data is not None else {})}
        if self.sign:
            headers = _sigv4(method, url, data, headers, self.region)
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw, status, kind = resp.read(), resp.status, resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw, status, kind = exc.read(), exc.code, exc.headers.get("Content-Type", "")
        except urllib.error.URLError as exc:
            raise ApiError(0, {"message": f"cannot reach {self.base_url}: {exc.reason}"}) from None
        parsed: Any = json.loads(raw) if "json" in kind and raw else raw.decode(errors="replace")
        if status >= 400:
            raise ApiError(status, parsed)
        return status, parsed


def _sigv4(method: str, url: str, data: bytes | None, headers: dict[str, str], region: str | None) -> dict[str, str]:
    """Headers of a request signed by botocore (credentials from the standard chain)."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = botocore.session.get_session()
    credentials = session.get_credentials()
    if credentials is None:
        raise ApiError(0, {"message": "no AWS credentials found (env, profile, SSO or instance role)"})
    region = region or session.get_config_variable("region")
    if not region:
        raise ApiError(0, {"message": "no AWS region: set AWS_REGION or a profile region"})
    request = AWSRequest(method=method, url=url, data=data or b"", headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


def _region_of(url: str) -> str | None:
    host = urllib.parse.urlsplit(url).hostname or ""
    parts = host.split(".")
    return parts[2] if len(parts) > 3 and parts[1] == "execute-api" else None


def api_for(env: str) -> ErasureApi:
    """The erasure API of an env: the loopback server locally, the stack's HTTP API (signed) on AWS."""
    if env == "local":
        from etl.local import http_api

        targets.local_state()
        return ErasureApi(http_api.local_url(naming.name(env, "erasure-api")))
    url = targets.resolve(env).out("erasure", "apiUrl")
    return ErasureApi(url, region=_region_of(url), sign=True)


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(1)


def _client(env: str) -> ErasureApi:
    try:
        return api_for(env)
    except (targets.TargetError, LookupError) as exc:
        _fail(exc)
        raise


def _state(s: str) -> str:
    return f"[{COLOURS[s]}]{s}[/]" if s in COLOURS else s


@app.command("request")
def request(
    subject_id: Annotated[list[str], typer.Option("--subject-id", "-s", help="A subject id (repeat for several).")],
    reason: Annotated[str, typer.Option(help="Why (e.g. 'GDPR art. 17 request').")],
    ticket: Annotated[str | None, typer.Option(help="Your ticket reference.")] = None,
    dataset: Annotated[list[str] | None, typer.Option("--dataset", "-d",
                                                      help="Limit to datasets (default: all with subjects).")] = None,
    requested_by: Annotated[str | None, typer.Option(help="Who asked (default: your IAM identity).")] = None,
    client_request_id: Annotated[str | None, typer.Option(help="Idempotency key: a retry files nothing new.")]
    = None,
    now: Annotated[bool, typer.Option("--now", help="Start a run at once instead of waiting for the batch.")]
    = False,
    env: EnvOpt = "local",
) -> None:
    """File an erasure request; prints its id (subject ids are sent, never printed)."""
    client = _client(env)
    body: dict[str, Any] = {"subject_ids": subject_id, "reason": reason}
    for key, value in (("ticket", ticket), ("datasets", dataset), ("requested_by", requested_by),
                       ("client_request_id", client_request_id)):
        if value:
            body[key] = value
    try:
        _, resp = client.call("POST", "/erasure-requests", body)
        if now:
            client.call("POST", "/erasure-runs")
    except ApiError as exc:
        _fail(exc)
    word = "already filed" if resp.get("duplicate") else "filed"
    deadline = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(resp["deadline"]))
    console.print(f"[green]{word}[/] [bold]{resp['id']}[/] ({resp['state']}, deadline {deadline})")
    console.print(f"  follow it: etl erasure status {resp['id']} --watch" + (f" --env {env}" if env != "local" else ""))


@app.command("run")
def run(env: EnvOpt = "local") -> None:
    """Start a run now with every pending request (otherwise the schedule batches them)."""
    try:
        _, resp = _client(env).call("POST", "/erasure-runs")
    except ApiError as exc:
        _fail(exc)
    console.print(f"[green]run requested[/]: {resp['pending']} pending request(s)")


def _progress(r: dict[str, Any]) -> tuple[int, int, str]:
    """(completed, total, label) for a progress bar: state steps, plus tasks while erasing."""
    state = r["state"]
    p = r.get("progress") or {}
    if state in FINAL:
        return 100, 100, state
    step = STATES.index(state) if state in STATES else 0
    base = step * 100 // (len(STATES) - 1)
    label = state
    if p.get("tasks_total"):
        share = p["tasks_done"] / p["tasks_total"]
        base += int(share * 100 / (len(STATES) - 1))
        label = f"{state} · {p['phase']} {p['tasks_done']}/{p['tasks_total']} tasks"
    return min(base, 99), 100, label


@app.command("status")
def status(
    request_id: Annotated[str, typer.Argument(help="The request id (er-…).")],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow it with a live progress bar.")] = False,
    timeout: Annotated[int, typer.Option(help="Stop watching after this many seconds.")] = 600,
    env: EnvOpt = "local",
) -> None:
    """State, deadline and progress of one request."""
    client = _client(env)
    try:
        _, r = client.call("GET", f"/erasure-requests/{request_id}")
        if watch and r["state"] not in FINAL:
            r = _watch(client, request_id, timeout, r)
    except ApiError as exc:
        _fail(exc)
    _show(r)
    if r["state"] == "FAILED":
        raise typer.Exit(2)


def _watch(client: ErasureApi, request_id: str, timeout: int, r: dict[str, Any]) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + timeout
    with Progress(TextColumn(f"{request_id}"), BarColumn(), TextColumn("{task.fields[label]}"),
                  TimeElapsedColumn(), console=console) as bars:
        done, total, label = _progress(r)
        task = bars.add_task("erasure", total=total, completed=done, label=label)
        while r["state"] not in FINAL and time.monotonic() < deadline:
            time.sleep(1)
            _, r = client.call("GET", f"/erasure-requests/{request_id}")
            done, total, label = _progress(r)
            bars.update(task, completed=done, total=total, label=label)
    return r


def _show(r: dict[str, Any]) -> None:
    console.print(f"[bold]{r['id']}[/]  {_state(r['state'])}  deadline in {r['deadline_in_days']} days")
    console.print(f"  reason: {r['reason']}  ticket: {r.get('ticket') or '-'}  by: {r['requested_by']}")
    console.print(f"  datasets: {', '.join(r['datasets'])}  subjects: {r['subject_count']} (hashed)")
    if r.get("progress"):
        p = r["progress"]
        console.print(f"  run {p['run_id']}: {p['phase']} (attempt {p['attempt']}), "
                      f"{p['tasks_done']}/{p['tasks_total']} tasks")
    result = r.get("result") or {}
    if r["state"] in ("COMPLETED", "FAILED"):
        console.print(f"  rows removed: {result.get('rows_removed', 0)}  files rewritten: "
                      f"{result.get('files_rewritten', 0)}  verified: {result.get('verified')}")
    if r.get("error"):
        console.print(f"  [red]{r['error']}[/]")
    for h in r.get("history", []):
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(h["at"]))
        console.print(f"    {at}  {h['state']}{'  ' + h['note'] if h.get('note') else ''}")


@app.command("list")
def list_requests(
    limit: Annotated[int, typer.Option(help="Rows per page (1-100).")] = 20,
    all_pages: Annotated[bool, typer.Option("--all", help="Every page, not just the newest.")] = False,
    env: EnvOpt = "local",
) -> None:
    """Requests, newest first."""
    client = _client(env)
    table = Table(title=f"erasure requests in {env}")
    for col in ("id", "state", "received", "deadline (days)", "datasets", "subjects", "rows removed", "ticket"):
        table.add_column(col)
    nxt: str | None = None
    try:
        while True:
            query = f"?limit={limit}" + (f"&next={nxt}" if nxt else "")
            _, page = client.call("GET", f"/erasure-requests{query}")
            for r in page["items"]:
                received = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["received_at"]))
                removed = str((r.get("result") or {}).get("rows_removed", ""))
                table.add_row(r["id"], _state(r["state"]), received, f"{r['deadline_in_days']:.1f}",
                              ",".join(r["datasets"]), str(r["subject_count"]), removed, r.get("ticket") or "")
            nxt = page.get("next")
            if not (all_pages and nxt):
                break
    except ApiError as exc:
        _fail(exc)
    console.print(table)
    if nxt:
        console.print("more: etl erasure list --all")


@app.command("cancel")
def cancel(request_id: Annotated[str, typer.Argument(help="The request id.")], env: EnvOpt = "local") -> None:
    """Cancel a request before its rewriting starts."""
    try:
        _, r = _client(env).call("POST", f"/erasure-requests/{request_id}/cancel")
    except ApiError as exc:
        _fail(exc)
    console.print(f"{r['id']} {_state(r['state'])}")


@app.command("certificate")
def certificate(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write it to this file (.json keeps the JSON).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="The JSON certificate instead of Markdown.")] = False,
    env: EnvOpt = "local",
) -> None:
    """The erasure certificate: Markdown on screen, or JSON/Markdown into a file."""
    as_json = as_json or bool(out and out.suffix == ".json")
    fmt = "" if as_json else "?format=md"
    try:
        _, body = _client(env).call("GET", f"/erasure-requests/{request_id}/certificate{fmt}",
                                    accept="application/json" if as_json else "text/markdown")
    except ApiError as exc:
        _fail(exc)
    text = json.dumps(body, indent=2) if isinstance(body, dict) else str(body)
    if out:
        out.write_text(text + ("\n" if not text.endswith("\n") else ""))
        console.print(f"[green]certificate written[/] to {out}")
    elif as_json:
        console.print_json(text)
    else:
        from rich.markdown import Markdown

        console.print(Markdown(text))


def demo(subject_id: str, env: str = "local", timeout: int = 180) -> str:
    """What `etl demo` shows: file a request for a sample customer, follow it live, print its certificate."""
    from rich.markdown import Markdown

    client = api_for(env)
    console.print(f"[bold]$ etl erasure request[/] --subject-id {subject_id} --reason 'GDPR art. 17 (demo)' "
                  "--ticket DEMO-1 --now")
    _, resp = client.call("POST", "/erasure-requests", {
        "subject_ids": [subject_id], "reason": "GDPR art. 17 (demo)", "ticket": "DEMO-1",
        "client_request_id": f"demo-{subject_id}"})
    client.call("POST", "/erasure-runs")
    rid = resp["id"]
    console.print(f"[bold]$ etl erasure status[/] {rid} --watch")
    _, r = client.call("GET", f"/erasure-requests/{rid}")
    if r["state"] not in FINAL:
        r = _watch(client, rid, timeout, r)
    _show(r)
    if r["state"] in ("COMPLETED", "FAILED"):
        console.print(f"[bold]$ etl erasure certificate[/] {rid}")
        _, text = client.call("GET", f"/erasure-requests/{rid}/certificate?format=md", accept="text/markdown")
        console.print(Markdown(str(text)))
    return rid
