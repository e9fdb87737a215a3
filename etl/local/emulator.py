"""The emulator process's server: moto on loopback, with the scaled S3 data plane, failing loudly.

moto's `ThreadedMotoServer.start()` waits forever for a server thread that died (a taken port
raises inside the thread): here a start failure is an `EmulatorError` that says what to do, and
the port is probed before anything else is started.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from etl.local import moto_ddb, moto_s3

START_TIMEOUT_S = 30


def answer_json_api_preflights(app: Any) -> Any:
    """CORS preflights of the AWS JSON APIs a browser calls (the console's Cognito sign-in: POST to `/`),
    answered here as AWS does (any origin; no credentials). moto routes a preflight by its headers, and a
    preflight carries neither a signature nor `X-Amz-Target`, so moto hands it to S3's "list buckets",
    which once answered 500 under concurrent requests: the browser's sign-in then "cannot reach" Cognito.
    Only `/` is taken: a preflight for a bucket or object still meets that bucket's CORS rules."""

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        requested = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
        if environ.get("REQUEST_METHOD") != "OPTIONS" or not requested or environ.get("PATH_INFO", "/") != "/":
            return app(environ, start_response)
        headers = [
            ("Access-Control-Allow-Origin", environ.get("HTTP_ORIGIN", "*")),
            ("Access-Control-Allow-Methods", "POST"),
            ("Access-Control-Allow-Headers", environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")),
            ("Access-Control-Max-Age", "600"),
            ("Vary", "Origin"),
            ("Content-Length", "0"),
        ]
        start_response("204 No Content" if requested == "POST" else "403 Forbidden", headers)
        return [b""]

    return middleware


class EmulatorError(RuntimeError):
    """The emulator could not start; the message says why and what to do."""


def check_port(host: str, port: int) -> None:
    """Raise EmulatorError if `port` cannot be bound on `host` (0 = any free port: always fine)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise EmulatorError(port_message(host, port, exc)) from exc


def port_message(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another `etl local up`, LocalStack or moto server?): "
                f"stop that process, or start on another port with `etl local up --port 0` (any free port)")
    return f"cannot listen on {host}:{port}: {exc}"


class Emulator:
    """moto server in a thread of this process; `wrap` can put a WSGI middleware around it."""

    def __init__(self, host: str, port: int, wrap: Callable[[Any], Any] | None = None) -> None:
        self.host, self.port, self.wrap = host, port, wrap
        self._server: Any = None
        self._thread: Any = None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start serving; return the endpoint URL or raise EmulatorError (never hang)."""
        import threading

        from moto.moto_server.threaded_moto_server import MotoRequestHandler
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        check_port(self.host, self.port)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_s3.install()
        moto_ddb.install()
        app = answer_json_api_preflights(DomainDispatcherApplication(create_backend_app))
        if self.wrap is not None:
            app = self.wrap(app)
        try:
            self._server = make_server(self.host, self.port, app, True, request_handler=MotoRequestHandler)
        except OSError as exc:
            raise EmulatorError(port_message(self.host, self.port, exc)) from exc
        except SystemExit as exc:  # werkzeug exits the process when the port is taken
            raise EmulatorError(f"port {self.port} on {self.host} is already in use: stop that process or pass "
                                "--port 0") from exc
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulator", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        endpoint = f"http://{host}:{port}"
        self._wait_answering(host, port, timeout_s)
        return endpoint

    def _wait_answering(self, host: str, port: int, timeout_s: float) -> None:
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise EmulatorError("the emulator's server thread stopped while starting (see the log above)")
            try:
                with socket.create_connection((host, port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise EmulatorError(f"the emulator did not answer on {host}:{port} within {timeout_s:.0f}s")

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
