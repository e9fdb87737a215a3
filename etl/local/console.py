"""Serve the compliance console on loopback, as CloudFront does on AWS, with a local user to sign in.

What the erasure stack put into the console bucket (the page, its modules, `config.json`) is served
from the emulator's S3; the API paths (infra.console.API_PATH_PATTERNS) are forwarded to the
console's HTTP API on loopback (JWT-checked there), so page and API share one origin as behind
CloudFront. Two local differences: `config.json` points the browser at the emulator's Cognito
endpoint instead of AWS's, and the server speaks HTTP on 127.0.0.1 (no TLS).

`start()` also creates a local user (every console group, a fresh password per `etl local up`) and
writes URL, user and password to `<state dir>/console.json` (mode 0600) for `etl local up`, `etl demo`
and the browser test. Nothing here logs a request: bodies may hold subject ids.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import secrets
import threading
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from contracts import aws, naming
from etl.local.paths import state_dir
from infra.console import API_PATH_PATTERNS, GROUPS, content_security_policy

INFO_FILE = "console.json"
LOCAL_USER = "local-officer"
FORWARDED = ("authorization", "content-type", "accept")


@dataclass(frozen=True)
class ConsoleInfo:
    url: str
    username: str
    password: str
    user_pool_id: str


def security_headers(cognito_endpoint: str) -> dict[str, str]:
    """The headers the CloudFront response-headers policy adds (HSTS aside: no TLS on loopback)."""
    return {"content-security-policy": content_security_policy(cognito_endpoint),
            "x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer",
            "cache-control": "no-cache"}


def _handler(bucket: str, api_url: str, endpoint: str) -> type[BaseHTTPRequestHandler]:
    s3 = aws.client("s3")
    headers = security_headers(endpoint)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # request lines are not logged: nothing here needs them

        def _reply(self, status: int, extra: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for k, v in {**headers, **extra}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            fwd = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED}
            req = urllib.request.Request(api_url.rstrip("/") + self.path, data=body, headers=fwd, method=self.command)
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    status, kind, data = resp.status, resp.headers.get("Content-Type", ""), resp.read()
            except urllib.error.HTTPError as exc:
                status, kind, data = exc.code, exc.headers.get("Content-Type", ""), exc.read()
            except urllib.error.URLError:
                status, kind, data = 502, "application/json", b'{"message":"the local console API is not reachable"}'
            self._reply(status, {"content-type": kind or "application/octet-stream"}, data)

        def _asset(self) -> None:
            path = urlsplit(self.path).path
            key = "index.html" if path in ("", "/") else path.lstrip("/")
            try:
                obj = s3.get_object(Bucket=bucket, Key=key)
            except s3.exceptions.NoSuchKey:
                return self._reply(404, {"content-type": "text/plain"}, b"not found")
            data = obj["Body"].read()
            if key == "config.json":  # the browser signs in against the emulator's Cognito
                config = json.loads(data)
                config["cognitoEndpoint"] = endpoint.rstrip("/") + "/"
                data = json.dumps(config).encode()
            self._reply(200, {"content-type": obj.get("ContentType") or "application/octet-stream"}, data)

        def _serve(self) -> None:
            path = urlsplit(self.path).path
            if any(fnmatch.fnmatchcase(path, p) for p in API_PATH_PATTERNS):
                return self._forward()
            if self.command not in ("GET", "HEAD"):
                return self._reply(405, {"content-type": "text/plain", "allow": "GET, HEAD"}, b"method not allowed")
            return self._asset()

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    return Handler


def _bind(handler: type[BaseHTTPRequestHandler], preferred: int) -> ThreadingHTTPServer:
    """The preferred port (a stable URL to bookmark) if free, else any free one."""
    try:
        return ThreadingHTTPServer(("127.0.0.1", preferred), handler)
    except OSError:
        return ThreadingHTTPServer(("127.0.0.1", 0), handler)


def create_local_user(pool_id: str, username: str = LOCAL_USER) -> str:
    """A confirmed user in every console group with a fresh password (returned); replaces an older one."""
    idp = aws.client("cognito-idp")
    password = f"Local-{secrets.token_urlsafe(12)}-9a"
    with contextlib.suppress(idp.exceptions.UsernameExistsException):
        idp.admin_create_user(UserPoolId=pool_id, Username=username, MessageAction="SUPPRESS",
                              TemporaryPassword=password)
    idp.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=password, Permanent=True)
    for group in GROUPS:
        idp.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)
    return password


class ConsoleSite:
    """The loopback console server (a thread of the supervisor) and its local user."""

    def __init__(self, bucket: str, api_url: str, endpoint: str, pool_id: str, directory: Path,
                 port: int = 0) -> None:
        self.directory = directory
        self.server = _bind(_handler(bucket, api_url, endpoint), port)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.info = ConsoleInfo(self.url, LOCAL_USER, create_local_user(pool_id), pool_id)
        path = directory / INFO_FILE
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self.info), f, indent=2)
        self._thread = threading.Thread(target=self.server.serve_forever, name="console", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        (self.directory / INFO_FILE).unlink(missing_ok=True)


def start(outputs: dict[str, Any], endpoint: str, directory: Path, env: str = "local",
          port: int = 8480) -> ConsoleSite | None:
    """Serve the console of the erasure stack's outputs; None when the stack has no console."""
    if "consoleBucket" not in outputs:
        return None
    from etl.local import http_api

    api_url = http_api.local_url(naming.name(env, "console-api"), directory)
    return ConsoleSite(outputs["consoleBucket"], api_url, endpoint, outputs["consoleUserPoolId"], directory, port)


def info(directory: Path | None = None) -> ConsoleInfo | None:
    """URL and local user of the running console, or None."""
    if directory is None:
        directory = state_dir()
    path = directory / INFO_FILE
    return ConsoleInfo(**json.loads(path.read_text())) if path.exists() else None
