"""The web app's own errors, and every error mapped to an HTTP status in one place.

    WebError
    ├── BadParameterError (ValueError)        400  a query parameter or body that cannot be used
    ├── UnauthorizedError (PermissionError)   401  no token, or a token that matches none
    └── ReadOnlyError (PermissionError)       403  a write to a server started without --allow-writes

Every other error is looked up in ``registry.errorcodes``' table (by ``isinstance`` over the one error
tree), the same table that gives the command line its exit codes.
"""

from __future__ import annotations

from registry import errorcodes

from rlreg import exitcodes
from rlreg.errors import CLIError


class WebError(CLIError):
    """Base class of the web app's own errors (a ``CLIError`` too: ``rlreg serve`` exits 4 on one)."""

    status = 500


class TooManyFeedsError(WebError):
    """Every live feed the server keeps open at once is taken (``feed.MAX_FEEDS``): try again later."""

    status = 503


class BadParameterError(WebError, ValueError):
    """A query parameter, path or request body the endpoint cannot use."""

    status = 400


class UnauthorizedError(WebError, PermissionError):
    """A write without ``Authorization: Bearer <token>``, or with a token that matches none."""

    status = 401


class ReadOnlyError(WebError, PermissionError):
    """A write to a server started without ``--allow-writes``."""

    status = 403


LABEL_BY_STATUS = {400: "invalid input", 401: "unauthorized", 403: "read-only", 404: "not found",
                   405: "method not allowed", 409: "conflict", 500: "server error",
                   503: "unavailable"}


def http_status(exc: BaseException) -> tuple[int, str] | None:
    """``(status, label)`` for an expected error, ``None`` for a bug (``registry.errorcodes``' table)."""
    if isinstance(exc, WebError):
        return exc.status, LABEL_BY_STATUS[exc.status]
    outcome = errorcodes.outcome_of(exc)
    return None if outcome is None else (outcome.http_status, outcome.label)


def error_document(status: int, label: str, exc: BaseException | None, message: str | None = None) -> dict:
    """The JSON body of an error response: ``{"error": {"status", "label", "type", "message"}}``."""
    text = message if message is not None else exitcodes.one_line(exc) if exc is not None else label
    return {"error": {"status": status, "label": label,
                      "type": type(exc).__name__ if exc is not None else None, "message": text}}
