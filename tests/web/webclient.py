"""Helpers of the web tests: a synchronous httpx client over the app's ASGI interface, a real server."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx

BIN = Path(sys.executable).parent
RLREG = shutil.which("rlreg", path=str(BIN)) or shutil.which("rlreg")
# RLREG_SERVE_TOKENS of the writable apps: alice's token as itself, ci-bot's as its SHA-256
TOKENS = "alice:alice-token-0123456789,ci-bot:sha256:" + hashlib.sha256(b"ci-bot-token-0123456789").hexdigest()
ALICE = {"Authorization": "Bearer alice-token-0123456789"}
CI_BOT = {"Authorization": "Bearer ci-bot-token-0123456789"}


class ASGIClient:
    """``httpx.AsyncClient(transport=ASGITransport(app))`` driven from synchronous tests."""

    def __init__(self, app: Any) -> None:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._client = self._portal.call(self._open, app)

    @staticmethod
    async def _open(app: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rlreg.test")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request through the app; the whole response."""
        return self._portal.call(functools.partial(self._client.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def close(self) -> None:
        self._portal.call(self._client.aclose)
        self._portal_cm.__exit__(None, None, None)


class Server:
    """``rlreg serve --json --port 0`` in a subprocess; ``url`` once it listens."""

    def __init__(self, db_url: str, storage: str, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 120) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("RLREG_SERVE")}
        self.proc = subprocess.Popen(
            [RLREG, "serve", "--db", db_url, "--storage", storage, "--port", "0", "--json", *args],
            env={**base, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self._first_line(timeout)
        self.info = json.loads(line)
        self.url = self.info["url"]

    def _first_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()  # the start line comes once the socket listens
        if not line or time.monotonic() > deadline:
            self.stop()
            raise AssertionError(f"rlreg serve did not start: {self.proc.stderr.read()}")
        return line

    def stop(self) -> str:
        """Interrupt the server (Ctrl-C) and return what it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stderr.read()
