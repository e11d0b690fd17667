"""``create_app(registry)``: the Starlette application behind ``rlreg serve``; routes as a plain list."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from rlreg.web import api, filters, openapi, pages, writes
from rlreg.web.auth import Tokens
from rlreg.web.errors import LABEL_BY_STATUS, BadParameterError, error_document, http_status
from rlreg.web.feed import Feeds

HERE = Path(__file__).resolve().parent
log = logging.getLogger("rlreg.web")

# Everything the pages load comes from this server: no inline script, nothing from elsewhere.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

ROUTES = [
    Route("/", pages.models_page, name="models"),
    Route("/models/{ref:path}", pages.model_or_version_page, name="model"),
    Route("/diff/{name:path}", pages.diff_page, name="diff"),
    Route("/events", pages.events_page, name="events"),
    Route("/healthz", api.healthz),
    Route("/api/v1/openapi.json", lambda request: JSONResponse(request.app.state.openapi)),
    Route("/api/v1/models", api.models),
    Route("/api/v1/models/{name:path}", api.model, methods=["GET"]),
    Route("/api/v1/models/{name:path}", writes.model_delete, methods=["DELETE"]),
    Route("/api/v1/versions/{ref:path}", api.versions, methods=["GET"]),
    Route("/api/v1/versions/{ref:path}", writes.version_write, methods=["POST", "DELETE"]),
    Route("/api/v1/history/{name:path}", api.history),
    Route("/api/v1/aliases/{ref:path}", api.aliases, methods=["GET"]),
    Route("/api/v1/aliases/{ref:path}", writes.alias_set, methods=["PUT"]),
    Route("/api/v1/aliases/{ref:path}", writes.alias_remove, methods=["DELETE"]),
    Route("/api/v1/events", api.events),
    Route("/api/v1/events/live", api.events_live),
    Route("/api/v1/diff/{name:path}", api.diff),
    Route("/api/v1/descriptions/{ref:path}", writes.describe, methods=["PUT"]),
    Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
]


def rlreg_version() -> str:
    """The installed package's version."""
    try:
        return package_version("rlreg")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def wants_json(request: Request) -> bool:
    """API and health paths answer errors in JSON; pages answer with an HTML page."""
    return request.url.path.startswith(("/api/", "/healthz"))


def error_response(request: Request, status: int, label: str, exc: BaseException | None, message: str | None = None) -> Response:
    """The error as JSON (API) or as a page (HTML), with ``status``."""
    doc = error_document(status, label, exc, message)
    if wants_json(request):
        return JSONResponse(doc, status_code=status)
    return pages.render(request, "error.html", status=status, error=doc["error"])


async def expected_error(request: Request, exc: Exception) -> Response:
    """Map an expected error onto its status (``errors.http_status``); a bug is re-raised (500)."""
    known = http_status(exc)
    if known is None:
        raise exc
    return error_response(request, *known, exc)


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own 404 (no such route) and 405 (method), in our shape."""
    label = LABEL_BY_STATUS.get(exc.status_code, "error")
    message = f"no page at {request.url.path!r}" if exc.status_code == 404 else str(exc.detail)
    return error_response(request, exc.status_code, label, None, message)


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback by the server; the client gets a short 500."""
    return error_response(request, 500, "server error", None, f"unexpected {type(exc).__name__}; see the server's log")


def _handlers() -> dict[Any, Any]:
    import sqlalchemy.exc

    from registry.errors import RegistryError, RLModuleError, StorageError
    from rlreg.errors import CLIError
    from rlreg.web.errors import WebError

    expected = (WebError, RegistryError, StorageError, RLModuleError, CLIError, OSError, ValueError, LookupError,
                sqlalchemy.exc.SQLAlchemyError)
    return {HTTPException: http_error, 500: server_error, **{cls: expected_error for cls in expected}}


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response (a plain ASGI middleware: streaming stays streaming)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def templates() -> Jinja2Templates:
    """The pages' templates, autoescaped, with the filters of ``rlreg.web.filters``."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.ChainableUndefined)
    env.filters.update(filters.FILTERS)
    env.globals["rlreg_version"] = rlreg_version()
    return Jinja2Templates(env=env)


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # what a browser on this machine sends as Host
_HOST = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::\d*)?")  # a Host header: name or [v6], then :port


class HostsOnly:
    """ASGI middleware: requests whose ``Host`` names none of ``hosts`` (case and a trailing dot aside) are
    refused with 400; a request without a ``Host`` (HTTP/1.0: a health probe) is served, as a browser
    always sends one."""

    def __init__(self, app: Any, hosts: Sequence[str]) -> None:
        self.app, self.hosts = app, {h.lower().rstrip(".") for h in hosts}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            header = dict(scope.get("headers") or ()).get(b"host")
            if header is not None:
                match = _HOST.fullmatch(header.decode("latin-1"))
                if match is None or match.group(1).lower().rstrip(".") not in self.hosts:
                    response = PlainTextResponse("this server answers only the names of the machine it runs on "
                                                 "(the Host header named another)", status_code=400)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(registry: Any, *, allow_writes: bool = False, tokens: Tokens | None = None,
               allowed_hosts: Sequence[str] | None = None) -> Starlette:
    """The web app over ``registry``: read-only unless ``allow_writes`` (which needs ``tokens``).

    ``allowed_hosts``: the only ``Host`` headers answered (others: 400). A server bound to this machine
    only is given ``LOOPBACK_HOSTS``: a web page elsewhere that points its own name at 127.0.0.1 (DNS
    rebinding) would otherwise read the registry through the browser of whoever opens it."""
    tokens = tokens or Tokens()
    if allow_writes and not tokens:
        raise BadParameterError("--allow-writes needs RLREG_SERVE_TOKENS=NAME:TOKEN[,NAME:TOKEN…]: "
                                "writes are only accepted with a bearer token")
    feeds = Feeds()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        feeds.stop_all()

    app = Starlette(routes=ROUTES, exception_handlers=_handlers(), lifespan=lifespan)
    app.add_middleware(SecurityHeaders)
    if allowed_hosts is not None:
        app.add_middleware(HostsOnly, hosts=list(allowed_hosts))
    app.state.registry = registry
    app.state.allow_writes = allow_writes
    app.state.tokens = tokens
    app.state.feeds = feeds
    app.state.templates = templates()
    app.state.openapi = openapi.document(rlreg_version())
    return app
