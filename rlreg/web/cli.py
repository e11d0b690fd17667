"""``rlreg serve``'s body: open the registry, read the tokens, build the app, serve it."""

from __future__ import annotations

from typing import Any

from storage import config

from rlreg.web.app import LOOPBACK_HOSTS, create_app
from rlreg.web.auth import parse_tokens
from rlreg.web.server import host_header_name, is_loopback, serve


def run_server(session: Any, host: str, port: int, allow_writes: bool) -> None:
    """Serve ``session``'s registry on ``host:port`` until interrupted."""
    tokens = parse_tokens(config.serve_tokens()) if allow_writes else None
    reg = session.registry
    reg.head()  # the database answers (or the command fails now, with its exit code, not on the first page)
    # Bound to this machine only: only its own names are answered (another page's name pointed at
    # 127.0.0.1 is refused); bound to other interfaces, the machine's names are the users' to choose.
    allowed = [*LOOPBACK_HOSTS, host_header_name(host)] if is_loopback(host) else None
    app = create_app(reg, allow_writes=allow_writes, tokens=tokens, allowed_hosts=allowed)
    serve(app, host, port, allow_writes=allow_writes, writers=tokens.names if tokens else [],
          as_json=session.as_json)
