"""``rlreg serve`` as a user runs it: where it binds, what it says, what it refuses."""

from __future__ import annotations

import httpx
import pytest
from webtoys import MODEL


def test_serve_binds_loopback_by_default_and_says_so(served):
    server, _ = served
    assert server.info["host"] == "127.0.0.1" and server.info["loopback_only"] is True
    assert httpx.get(server.url + "/healthz", timeout=10).json()["ok"] is True


def test_serve_start_line_for_people():
    from rlreg.web.server import start_line

    line = start_line("127.0.0.1", 8765, False, [], as_json=False)
    assert "http://127.0.0.1:8765" in line and "read-only" in line and "only this machine" in line
    line = start_line("0.0.0.0", 8765, True, ["alice"], as_json=False)
    assert "reachable from other machines" in line and "writes allowed for alice" in line


def test_serve_with_writes_and_tokens_accepts_a_token_over_http(served):
    server, _ = served
    assert server.info["writes"] is True and server.info["writers"] == ["alice", "ci-bot"]
    url = f"{server.url}/api/v1/aliases/{MODEL}@canary"
    assert httpx.put(url, json={"version": 3}, timeout=10).status_code == 401
    assert httpx.get(f"{server.url}/api/v1/aliases/{MODEL}", timeout=10).json().get("canary") is None
    r = httpx.put(url, json={"version": 3}, headers={"Authorization": "Bearer alice-token-0123456789"}, timeout=10)
    assert r.status_code == 200, r.text
    assert httpx.get(f"{server.url}/api/v1/aliases/{MODEL}", timeout=10).json()["canary"] == 3


def serve_in_process(monkeypatch, *args: str, env: dict[str, str] | None = None):
    """``rlreg serve ARGS`` through the same Click group, for the cases that stop before serving."""
    from click.testing import CliRunner

    from rlreg.cli import cli

    monkeypatch.delenv("RLREG_SERVE_TOKENS", raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    return CliRunner().invoke(cli, ["serve", "--port", "0", *args], prog_name="rlreg")


@pytest.mark.parametrize("env, fragment", [
    ({}, "--allow-writes needs RLREG_SERVE_TOKENS"),
    ({"RLREG_SERVE_TOKENS": "alice:short"}, "at least 16"),
])
def test_serve_allow_writes_without_usable_tokens_exits_4(fresh, monkeypatch, env, fragment):
    result = serve_in_process(monkeypatch, "--db", fresh.db_url, "--storage", fresh.storage, "--allow-writes", env=env)
    assert result.exit_code == 4, result.output
    assert fragment in result.stderr


def test_serve_on_a_database_without_a_registry_exits_3(tmp_path, monkeypatch):
    result = serve_in_process(monkeypatch, "--db", f"sqlite:///{tmp_path / 'typo.db'}")
    assert result.exit_code == 3, result.output
    assert "typo.db" in result.stderr


def test_serve_on_a_host_name_that_does_not_resolve_is_a_usage_error(fresh, monkeypatch):
    """One line and exit 2, not a traceback (socket.gaierror); ``[::1]`` is read as the address ``::1``."""
    result = serve_in_process(monkeypatch, "--db", fresh.db_url, "--storage", fresh.storage,
                              "--host", "no-such-host.invalid")
    assert result.exit_code == 2, result.output
    assert "'--host'" in result.stderr and "Traceback" not in result.stderr
    from rlreg.web.server import bind

    sock = bind("[::1]", 0)  # (the loopback's IPv6 address, as a URL writes it)
    try:
        assert sock.getsockname()[0] == "::1"
    finally:
        sock.close()


def test_the_read_pages_never_import_torch(populated):
    """``rlreg serve`` starts and answers reads without torch (only a diff or a version's state needs it)."""
    import subprocess
    import sys

    script = f"""
import asyncio, sys
import httpx
from registry import Registry
from rlreg.web import create_app

async def main():
    app = create_app(Registry({populated.db_url!r}, {populated.storage!r}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for path in ("/", "/models/{MODEL}", "/events", "/api/v1/versions/{MODEL}", "/api/v1/models", "/healthz"):
            assert (await c.get(path)).status_code == 200, path
asyncio.run(main())
print("torch" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
