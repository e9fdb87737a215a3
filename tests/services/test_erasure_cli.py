"""`etl erasure`: SigV4 signing by botocore, the HTTP client, commands against a stub API, progress."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from etl import erasure_cli
from etl.erasure_cli import ApiError, ErasureApi, _progress, _region_of, _sigv4

RID = "er-20250101000000-abcdefabcd"


class Stub(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        return

    def _send(self, status: int, body: Any, kind: str = "application/json") -> None:
        data = (json.dumps(body) if kind == "application/json" else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        Stub.seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if self.path == "/erasure-requests" and body.get("reason") == "bad":
            return self._send(400, {"message": "invalid erasure request", "errors": ["subject_ids[0] is empty"]})
        if self.path == "/erasure-requests":
            return self._send(202, {"id": RID, "state": "RECEIVED", "deadline": 1735689600, "duplicate": False})
        if self.path == "/erasure-runs":
            return self._send(202, {"message": "a run starts now", "pending": 1})
        return self._send(409, {"message": f"request {RID} is ERASING: it can be cancelled only before"})

    def do_GET(self) -> None:
        if self.path.endswith("/certificate?format=md"):
            return self._send(200, f"# Erasure certificate — {RID}\n\n**Outcome: COMPLETED**\n", "text/markdown")
        return self._send(200, {"id": RID, "state": "COMPLETED", "deadline_in_days": 29.5, "reason": "r",
                                "ticket": "T", "requested_by": "dpo", "datasets": ["orders"], "subject_count": 1,
                                "result": {"rows_removed": 3, "files_rewritten": 1, "verified": True},
                                "history": [{"at": 0, "state": "RECEIVED"}], "progress": None})


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(erasure_cli, "api_for", lambda env: ErasureApi(url))
    Stub.seen = []
    yield url
    server.shutdown()


def test_requests_to_aws_are_signed_by_botocore_for_execute_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    headers = _sigv4("POST", "https://abc.execute-api.eu-west-1.amazonaws.com/erasure-requests", b"{}",
                     {"Content-Type": "application/json"}, "eu-west-1")
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in headers["Authorization"]
    assert "X-Amz-Date" in headers
    assert _region_of("https://abc.execute-api.eu-west-1.amazonaws.com") == "eu-west-1"


def test_request_prints_the_id_and_never_the_subject(stub: str) -> None:
    result = CliRunner().invoke(erasure_cli.app, ["request", "-s", "123456789", "--reason", "GDPR", "--ticket", "T-1",
                                                  "--now"])
    assert result.exit_code == 0, result.output
    assert RID in result.output and "123456789" not in result.output
    assert Stub.seen[0]["body"] == {"subject_ids": ["123456789"], "reason": "GDPR", "ticket": "T-1"}
    assert Stub.seen[0]["auth"] is None, "loopback requests are not signed"
    assert [s["path"] for s in Stub.seen] == ["/erasure-requests", "/erasure-runs"]


def test_a_4xx_is_shown_with_what_is_wrong(stub: str) -> None:
    result = CliRunner().invoke(erasure_cli.app, ["request", "-s", " ", "--reason", "bad"])
    assert result.exit_code == 1
    assert "HTTP 400: invalid erasure request" in result.stderr and "subject_ids[0] is empty" in result.stderr
    result = CliRunner().invoke(erasure_cli.app, ["cancel", RID])
    assert result.exit_code == 1 and "HTTP 409" in result.stderr


def test_status_certificate_and_an_unreachable_api(stub: str, tmp_path: Any) -> None:
    result = CliRunner().invoke(erasure_cli.app, ["status", RID])
    assert result.exit_code == 0 and "COMPLETED" in result.output and "rows removed: 3" in result.output
    out = tmp_path / "cert.md"
    result = CliRunner().invoke(erasure_cli.app, ["certificate", RID, "--out", str(out)])
    assert result.exit_code == 0 and out.read_text().startswith(f"# Erasure certificate — {RID}")
    with pytest.raises(ApiError, match="cannot reach"):
        ErasureApi("http://127.0.0.1:9").call("GET", "/erasure-requests")


def test_progress_bar_follows_states_and_tasks() -> None:
    assert _progress({"state": "RECEIVED"})[0] == 0
    erasing = _progress({"state": "ERASING", "progress": {"phase": "lake", "tasks_done": 1, "tasks_total": 2}})
    verifying = _progress({"state": "VERIFYING"})
    assert 0 < erasing[0] < verifying[0] < 100 and "lake 1/2 tasks" in erasing[2]
    assert _progress({"state": "FAILED"}) == (100, 100, "FAILED")
