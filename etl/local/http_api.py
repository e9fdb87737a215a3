"""Serve the program's HTTP APIs (API Gateway v2) on 127.0.0.1 for the local platform.

Routes and their Lambda integrations are read back from the emulator (where moto_apigw.py created
them), so what is served is what the program declared. Each API runs in its own process with the
integrated function's environment, like the function hosts: an HTTP request becomes an API Gateway
payload-2.0 proxy event, the function's handler answers, and its response becomes the HTTP response.
Function output goes to the function's log under `<state dir>/logs/`. JWT routes are checked
like API Gateway's JWT authorizer does (etl.local.jwt_authorizer). Local differences: IAM
authorisation is not checked (the caller is `arn:aws:iam::<account>:user/local-developer`),
throttling is not applied.

Supervisor wiring: `apis = http_api.start(state.functions, state_dir())` after the function hosts,
`apis.pids()` into the recorded hosts, `apis.stop()` on shutdown. Clients find the URL with
`http_api.local_url(name)` (the API's name, e.g. `etl-local-erasure-api`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from contracts import aws
from etl.local import accounting, jwt_authorizer
from etl.local.functions import stop_processes
from etl.local.paths import state_dir

URLS_FILE = "http-apis.json"
ROOT = Path(__file__).resolve().parents[2]
LOCAL_CALLER = "arn:aws:iam::{account}:user/local-developer"
_PARAM = re.compile(r"\{([A-Za-z0-9_]+)(\+?)\}")


@dataclass(frozen=True)
class Route:
    method: str  # GET … or ANY
    path: str  # template, e.g. /erasure-requests/{id}
    authorization: str
    authorizer_id: str = ""

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method):
            return None
        pattern = "^" + _PARAM.sub(lambda m: f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})",
                                   re.escape(self.path).replace(r"\{", "{").replace(r"\}", "}")) + "$"
        found = re.match(pattern, path)
        return found.groupdict() if found else None


@dataclass(frozen=True)
class ApiSpec:
    api_id: str
    name: str
    function: dict[str, Any]  # the integrated function's spec (etl.local.functions.FunctionSpec as a dict)
    routes: tuple[Route, ...]
    port: int
    account: str
    authorizers: dict[str, dict[str, Any]] = field(default_factory=dict)  # JWT authorizers by id


def authorizers(api_id: str, routes: list[Route]) -> dict[str, dict[str, Any]]:
    """The routes' JWT authorizers (issuer, audiences, identity source) as the emulator holds them."""
    found = {}
    client = aws.client("apigatewayv2")
    for authorizer_id in sorted({r.authorizer_id for r in routes if r.authorizer_id}):
        a = client.get_authorizer(ApiId=api_id, AuthorizerId=authorizer_id)
        if a.get("AuthorizerType") == "JWT":
            jwt = a.get("JwtConfiguration") or {}
            found[a["AuthorizerId"]] = {"issuer": jwt.get("Issuer", ""), "audiences": jwt.get("Audience", []),
                                        "identity_source": (a.get("IdentitySource") or [""])[0]}
    return found


def discover(functions: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, list[Route]]]:
    """(api id, api name, function name, routes) of every HTTP API in the emulator with one Lambda integration."""
    client = aws.client("apigatewayv2")
    found = []
    for api in client.get_apis().get("Items", []):
        if api.get("ProtocolType") != "HTTP":
            continue
        integrations = {i["IntegrationId"]: i for i in client.get_integrations(ApiId=api["ApiId"]).get("Items", [])}
        by_function: dict[str, list[Route]] = {}
        for r in client.get_routes(ApiId=api["ApiId"]).get("Items", []):
            target = (r.get("Target") or "").removeprefix("integrations/")
            uri = integrations.get(target, {}).get("IntegrationUri", "")
            fn = uri.rsplit(":function:", 1)[-1].split(":", 1)[0] if ":function:" in uri else ""
            if fn not in functions:
                raise LookupError(f"route {r['RouteKey']!r} of API {api['Name']!r} targets {uri!r}, "
                                  "which is not a function of the program")
            method, _, path = r["RouteKey"].partition(" ")
            by_function.setdefault(fn, []).append(Route(method, path, r.get("AuthorizationType", "NONE"),
                                                        r.get("AuthorizerId", "")))
        if len(by_function) > 1:
            raise NotImplementedError(f"API {api['Name']!r} integrates several functions; serve one per API")
        for fn, routes in by_function.items():
            found.append((api["ApiId"], api["Name"], fn, routes))
    return found


def proxy_event(route: Route, params: dict[str, str], api_id: str, account: str, method: str, raw_path: str,
                query: str, headers: dict[str, str], body: bytes,
                claims: dict[str, str] | None = None) -> dict[str, Any]:
    """The payload-2.0 event API Gateway gives a Lambda proxy integration."""
    qs: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        qs[k] = f"{qs[k]},{v}" if k in qs else v
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    now = time.time()
    return {
        "version": "2.0", "routeKey": route.key, "rawPath": raw_path, "rawQueryString": query,
        "headers": {k.lower(): v for k, v in headers.items()},
        **({"queryStringParameters": qs} if qs else {}),
        **({"pathParameters": params} if params else {}),
        "requestContext": {
            "accountId": account, "apiId": api_id, "domainName": "127.0.0.1", "domainPrefix": "127",
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": headers.get("User-Agent", "")},
            "requestId": uuid.uuid4().hex, "routeKey": route.key, "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
            **({"authorizer": {"iam": {"accountId": account, "userArn": LOCAL_CALLER.format(account=account),
                                       "callerId": "local-developer"}}} if route.authorization == "AWS_IAM" else {}),
            **({"authorizer": {"jwt": {"claims": claims, "scopes": None}}} if claims is not None else {}),
        },
        **({"body": text, "isBase64Encoded": encoded} if body else {"isBase64Encoded": False}),
    }


def _make_handler(spec: ApiSpec, handler: Any, context_factory: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # access lines would carry paths only, but the function logs what matters

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            for route in spec.routes:
                params = route.match(self.command, url.path)
                if params is not None:
                    break
            else:
                return self._reply(404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
            claims = None
            if route.authorization == "JWT":
                try:
                    claims = jwt_authorizer.verify(dict(self.headers.items()), spec.authorizers[route.authorizer_id])
                except (jwt_authorizer.Unauthorized, KeyError):
                    return self._reply(401, {"content-type": "application/json",
                                             "www-authenticate": "Bearer"}, b'{"message":"Unauthorized"}')
            event = proxy_event(route, params, spec.api_id, spec.account, self.command, url.path, url.query,
                                dict(self.headers.items()), body, claims)
            try:
                resp = handler(event, context_factory())
            except Exception:  # Lambda returns 500 for an integration failure and logs the error
                traceback.print_exc()
                return self._reply(500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}')
            headers = {k.lower(): str(v) for k, v in (resp.get("headers") or {}).items()}
            data = resp.get("body") or ""
            raw = base64.b64decode(data) if resp.get("isBase64Encoded") else data.encode()
            self._reply(int(resp.get("statusCode", 200)), headers, raw)

        def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                if k not in ("content-length", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    return Handler


def serve(spec: ApiSpec) -> None:
    """Run one API's server in this process (the function's environment is already ours)."""
    from etl.local.functions import FunctionSpec, LambdaContext, load_handler

    fn = FunctionSpec(**spec.function)
    handler = load_handler(fn.handler)
    server = ThreadingHTTPServer(("127.0.0.1", spec.port), _make_handler(spec, handler, lambda: LambdaContext(fn)))
    print(json.dumps({"local": "http-api", "api": spec.name, "url": f"http://127.0.0.1:{spec.port}",
                      "routes": [r.key for r in spec.routes]}), flush=True)
    server.serve_forever()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiHosts:
    """The API server processes of the local platform; restarts one that dies until stopped."""

    def __init__(self, specs: list[ApiSpec], directory: Path,
                 on_spawn: Callable[[str, int], None] | None = None) -> None:
        self.specs = {s.name: s for s in specs}
        self.directory = directory
        self.children: dict[str, subprocess.Popen] = {}
        self.on_spawn = on_spawn  # the supervisor records every pid at once (`etl local down` after a crash)
        self._stop = threading.Event()
        try:
            for spec in specs:
                self._spawn(spec)
            for spec in specs:  # "ready" must mean the API answers, not that its process was started
                self._wait_listening(spec)
        except Exception:
            stop_processes(self.children.values())  # never leave a half-started API behind
            raise
        urls = {s.name: f"http://127.0.0.1:{s.port}" for s in specs}
        (directory / URLS_FILE).write_text(json.dumps(urls, indent=2))
        self._watcher = threading.Thread(target=self._watch, name="http-api-watch", daemon=True)
        self._watcher.start()

    def _spawn(self, spec: ApiSpec) -> None:
        logs = self.directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **spec.function["environment"], "PYTHONPATH": str(ROOT),
               **accounting.caller_env(spec.function["name"])}
        out = open(logs / f"{spec.function['name']}.log", "ab")  # noqa: SIM115 - owned by the child
        payload = {**asdict(spec), "routes": [asdict(r) for r in spec.routes]}
        self.children[spec.name] = subprocess.Popen(
            [sys.executable, "-m", "etl.local.http_api", json.dumps(payload)],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        if self.on_spawn is not None:
            self.on_spawn(f"http-api:{spec.name}", self.children[spec.name].pid)

    def _wait_listening(self, spec: ApiSpec, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.children[spec.name].poll() is not None:
                raise RuntimeError(f"http api {spec.name} exited at start; see logs/{spec.function['name']}.log")
            try:
                with socket.create_connection(("127.0.0.1", spec.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"http api {spec.name} did not listen on port {spec.port} within {timeout_s:.0f}s")

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            for name, proc in list(self.children.items()):
                if proc.poll() is not None and not self._stop.is_set():
                    print(f"http api {name} exited with {proc.returncode}; restarting", flush=True)
                    self._spawn(self.specs[name])

    def pids(self) -> dict[str, int]:
        return {f"http-api:{name}": p.pid for name, p in self.children.items()}

    def stop(self) -> None:
        self._stop.set()
        stop_processes(self.children.values())
        (self.directory / URLS_FILE).unlink(missing_ok=True)


def start(functions: dict[str, dict[str, Any]], directory: Path,
          on_spawn: Callable[[str, int], None] | None = None) -> ApiHosts:
    """Discover the HTTP APIs in the emulator and start one loopback server per API."""
    account = aws.client("sts").get_caller_identity()["Account"]
    specs = [ApiSpec(api_id, name, functions[fn]["function"], tuple(routes), _free_port(), account,
                     authorizers(api_id, routes))
             for api_id, name, fn, routes in discover(functions)]
    return ApiHosts(specs, directory, on_spawn)


def local_url(name: str, directory: Path | None = None) -> str:
    """URL of a local API by name; raises LookupError naming the APIs that are served."""
    if directory is None:
        directory = state_dir()
    path = directory / URLS_FILE
    urls = json.loads(path.read_text()) if path.exists() else {}
    if name not in urls:
        raise LookupError(f"no local HTTP API {name!r} (served: {', '.join(urls) or 'none'}); "
                          "is the local platform up with the erasure stack?")
    return str(urls[name])


def main(argv: list[str]) -> None:
    data = json.loads(argv[1])
    data["routes"] = tuple(Route(**r) for r in data["routes"])
    serve(ApiSpec(**data))


if __name__ == "__main__":
    main(sys.argv)
