"""Run the app on uvicorn: bind the socket first, so the start line names the real address."""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any

import click

LOOPBACK_HINT = "only this machine can connect; --host 0.0.0.0 listens on every interface"
SHUTDOWN_GRACE = 2.0  # seconds for open feeds to end on Ctrl-C


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def start_line(host: str, port: int, allow_writes: bool, writers: list[str], as_json: bool) -> str:
    """What ``rlreg serve`` prints once it listens: where, and whether writes are possible."""
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    if as_json:
        return json.dumps({"url": url, "host": host, "port": port, "loopback_only": is_loopback(host),
                           "writes": allow_writes, "writers": writers})
    mode = f"writes allowed for {', '.join(writers)} (bearer tokens)" if allow_writes else "read-only"
    where = f"bound to {host}: {LOOPBACK_HINT}" if is_loopback(host) else (
        f"bound to {host}: reachable from other machines; anyone who can reach it can read the registry")
    return f"rlreg: serving {url} ({mode}; {where}); Ctrl-C stops"


def serve(app: Any, host: str, port: int, *, allow_writes: bool, writers: list[str], as_json: bool = False,
          log_level: str = "warning") -> None:
    """Listen on ``host:port``, say so on stdout, serve until interrupted."""
    import uvicorn

    sock = bind(host, port)
    click.echo(start_line(host, sock.getsockname()[1], allow_writes, writers, as_json))
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=SHUTDOWN_GRACE, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
