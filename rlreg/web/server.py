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
    """Whether ``host`` is a loopback address or a name of one (``localhost``, ``LOCALHOST``, ``127.1``:
    every address it resolves to is a loopback's)."""
    host = unbracketed(host)
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:  # (the addresses ``bind`` may take: of the family it binds, not every address the name has)
        found = socket.getaddrinfo(host, None, family=_family(host), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(found) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in found)


def _family(host: str) -> int:
    """The address family ``bind`` listens on for ``host``: IPv6 for an IPv6 address, else IPv4 (a name
    is bound to its IPv4 address)."""
    return socket.AF_INET6 if ":" in unbracketed(host) else socket.AF_INET


def host_header_name(host: str) -> str:
    """``host`` as a ``Host`` header names it (an IPv6 address in brackets)."""
    host = unbracketed(host)
    return f"[{host}]" if ":" in host else host


def unbracketed(host: str) -> str:
    """``::1`` for ``[::1]`` (an IPv6 address as URLs write it); any other host as it is."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); ``host`` may be written ``[::1]``."""
    host = unbracketed(host)
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except socket.gaierror as exc:  # (a name that does not resolve: the user's input, not the system's)
        sock.close()
        raise click.BadParameter(f"{host!r} is not an address or a name this machine resolves ({exc.strerror})",
                                 param_hint="'--host'") from None
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

    host = unbracketed(host)
    sock = bind(host, port)
    click.echo(start_line(host, sock.getsockname()[1], allow_writes, writers, as_json))
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=SHUTDOWN_GRACE, access_log=False)

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            # The open feeds end first: uvicorn waits SHUTDOWN_GRACE for the open responses, and stopped
            # only in the app's lifespan (which comes after), they were cancelled with a traceback each.
            feeds = getattr(getattr(app, "state", None), "feeds", None)
            if feeds is not None:
                feeds.stop_all()
            await super().shutdown(sockets=sockets)

    Server(config).run(sockets=[sock])
