"""``rlreg serve``'s body: open the registry, read the tokens, build the app, serve it."""

from __future__ import annotations

from typing import Any

from storage import config

from rlreg.web.app import create_app
from rlreg.web.auth import parse_tokens
from rlreg.web.server import serve


def run_server(session: Any, host: str, port: int, allow_writes: bool) -> None:
    """Serve ``session``'s registry on ``host:port`` until interrupted."""
    tokens = parse_tokens(config.serve_tokens()) if allow_writes else None
    reg = session.registry
    reg.head()  # the database answers (or the command fails now, with its exit code, not on the first page)
    app = create_app(reg, allow_writes=allow_writes, tokens=tokens)
    serve(app, host, port, allow_writes=allow_writes, writers=tokens.names if tokens else [],
          as_json=session.as_json)
