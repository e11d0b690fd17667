"""An HTTP proxy of our own on 127.0.0.1 in front of moto's S3 server that injects faults.

Each request is forwarded unchanged unless the plan says otherwise: answer ``500``/``503`` with an S3
error document, drop the connection before forwarding (nothing reached the server) or after (the
server did the work, the client never hears of it). s3fs and botocore are not touched: they see a
real, misbehaving endpoint (point ``AWS_ENDPOINT_URL`` at ``proxy.url``).
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("500", "503", "drop-before", "drop-after")
_BODY = {
    "500": ("InternalError", "We encountered an internal error. Please try again."),
    "503": ("SlowDown", "Please reduce your request rate."),
}
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class FaultPlan:
    """Which requests fail and how: every request with probability ``rate`` (seeded), or ``always``;
    with ``first=n``, a request for a method and path that failed ``n`` times goes through (a retry)."""

    def __init__(self, rate: float = 0.0, faults: tuple[str, ...] = FAULTS, seed: int = 0, methods: tuple[str, ...] = ()):
        self.rate, self.faults, self.methods, self.first = rate, faults, methods, 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._failed: Counter[tuple[str, str]] = Counter()
        self.counts: Counter[str] = Counter()
        self.puts: list[dict[str, str]] = []  # the headers of each PUT, lower-cased names
        self.held: list[tuple[str, threading.Event]] = []  # GETs of paths holding the text wait for the event

    def hold(self, text: str) -> threading.Event:
        """Hold every GET whose path holds ``text`` (before it is forwarded) until the event returned is set."""
        release = threading.Event()
        with self._lock:
            self.held.append((text, release))
        return release

    def wait_if_held(self, method: str, path: str) -> None:
        with self._lock:
            events = [event for text, event in self.held if method == "GET" and text in path]
        for event in events:
            event.wait(120)

    def set(self, rate: float, faults: tuple[str, ...] = FAULTS, methods: tuple[str, ...] = (), first: int = 0) -> None:
        with self._lock:
            self.rate, self.faults, self.methods, self.first = rate, faults, methods, first

    def pick(self, method: str, path: str = "") -> str | None:
        with self._lock:
            self.counts["requests"] += 1
            # "HEAD", "PUT", ...: what a client asked of objects; "holders HEAD", "collecting GET", ...: of
            # holder records and gc leases
            kind = next((k for k in ("holders", "collecting") if k in path), None)
            self.counts[f"{kind} {method}" if kind else method] += 1
            if self.methods and method not in self.methods:
                return None
            if self.first and self._failed[method, path] >= self.first:
                return None
            if self.rate <= 0 or self._random.random() >= self.rate:
                return None
            fault = self._random.choice(self.faults)
            self.counts[fault] += 1
            self._failed[method, path] += 1
            return fault


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args: object) -> None:
        return None

    def _proxy(self) -> None:
        body = self._body()
        if self.command == "PUT":
            self.server.plan.puts.append({k.lower(): v for k, v in self.headers.items()})
        self.server.plan.wait_if_held(self.command, self.path)
        fault = self.server.plan.pick(self.command, self.path)
        if fault == "drop-before":
            return self._drop()
        if fault in _BODY:
            return self._error(int(fault), *_BODY[fault])
        status, reason, headers, payload = self._forward(body)
        if fault == "drop-after":
            return self._drop()
        self.send_response(status, reason)
        head = self.command == "HEAD"  # its Content-Length is the object's size: passed on as it is
        for k, v in headers:
            if k.lower() not in _HOP and (head or k.lower() != "content-length"):
                self.send_header(k, v)
        if not head:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        target = urlsplit(self.server.upstream)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.reason, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _error(self, status: int, code: str, message: str) -> None:
        doc = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
               f"<RequestId>fault-proxy</RequestId></Error>").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(doc)))
        self.end_headers()
        self.wfile.write(doc)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: str, plan: FaultPlan):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream, self.plan = upstream, plan


class FaultProxy:
    """``FaultProxy(upstream_url, plan)``: start with ``with`` (or ``start()``/``stop()``); ``url`` to point clients at."""

    def __init__(self, upstream: str, plan: FaultPlan | None = None):
        self.plan = plan or FaultPlan()
        self._server = _Server(upstream, self.plan)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True)

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        for _, event in self.plan.held:
            event.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
