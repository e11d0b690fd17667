"""The JSON API under ``/api/v1/``: the documents of the command line's ``--json``, over HTTP."""

from __future__ import annotations

import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from registry.errors import DatabaseUnavailableError, RegistryError

from rlreg.output import to_jsonable
from rlreg.web import reads
from rlreg.web.errors import BadParameterError
from rlreg.web.refs import model_name, read_path


def json_response(obj: Any, status: int = 200) -> JSONResponse:
    """``obj`` as the CLI's ``--json`` writes it."""
    return JSONResponse(to_jsonable(obj), status_code=status)


def healthz(request: Request) -> JSONResponse:
    """Liveness and the log's head: the database answered. Any expected error reaching it is a 503 with
    ``ok: false`` (a dropped database is "not found" elsewhere, but to a health check the service is down)."""
    try:
        head = request.app.state.registry.head()
    except RegistryError as exc:
        return JSONResponse({"ok": False, "error": str(exc)[:2000], "writes": request.app.state.allow_writes},
                            status_code=503)
    return JSONResponse({"ok": True, "head": head, "writes": request.app.state.allow_writes})


def models(request: Request) -> JSONResponse:
    """``rlreg models --json``."""
    return json_response(request.app.state.registry.models())


def model(request: Request) -> JSONResponse:
    """One model's entry of ``rlreg models --json``."""
    return json_response(reads.model_info(request.app.state.registry, model_name(request)))


def versions(request: Request) -> Response:
    """``/versions/NAME``: the list (``where``, ``order_by``, ``limit``, ``deleted``); ``/versions/NAME/3``:
    ``rlreg show --json``; ``/versions/NAME/3/tensors/T``: one verified tensor as safetensors bytes."""
    ref = read_path(request.path_params["ref"])
    reg = request.app.state.registry
    if ref.inner.startswith("tensors/") and ref.names_version:
        return tensor_response(reg, ref, ref.inner[len("tensors/"):])
    if ref.inner:
        raise BadParameterError(f"{request.url.path!r}: expected …/versions/NAME[/VERSION[/tensors/TENSOR]]")
    if ref.names_version:
        return json_response(reads.version_document(reg, ref))
    params = request.query_params
    return json_response(reg.versions(
        ref.name, where=params.get("where") or None, order_by=params.get("order_by") or None,
        limit=reads.positive_int(params.get("limit"), "limit"),
        include_deleted=params.get("deleted") in {"1", "true"},
    ))


def tensor_response(reg: Any, ref: Any, name: str) -> Response:
    """One tensor, read and verified, as a safetensors file (named after the version and tensor)."""
    from safetensors.torch import save

    mv, tensor, entry = reads.tensor(reg, ref, name)
    body = save({name: tensor.contiguous()}, metadata={"rlreg.uri": mv.uri, "rlreg.digest": str(entry.get("digest"))})
    stem = f"{mv.name}-{mv.version}-{name}".replace("/", "_")
    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in stem)
    disposition = f"attachment; filename=\"{fallback}.safetensors\"; filename*=UTF-8''{urllib.parse.quote(stem)}.safetensors"
    return Response(body, media_type="application/octet-stream",
                    headers={"Content-Disposition": disposition, "X-Rlreg-Digest": str(entry.get("digest"))})


def history(request: Request) -> JSONResponse:
    """``rlreg history NAME --json``."""
    return json_response(request.app.state.registry.history(model_name(request)))


def aliases(request: Request) -> JSONResponse:
    """``{alias: version}`` of a model."""
    return json_response(request.app.state.registry.aliases(model_name(request, "ref")))


def _filters(request: Request) -> dict[str, Any]:
    params = request.query_params
    return {"stream": params.get("model") or None, "types": frozenset(t for t in params.getlist("type") if t)}


def events(request: Request) -> JSONResponse:
    """``rlreg events --json``: ``after``, ``limit`` (ascending by position); ``model``/``type`` filter."""
    params = request.query_params
    after = reads.non_negative_int(params.get("after"), "after")
    limit = reads.positive_int(params.get("limit"), "limit", default=1000, maximum=10_000)
    filters = _filters(request)  # (applied by the read: ``limit`` counts the events that match)
    return json_response(request.app.state.registry.events(after=after, limit=limit, model=filters["stream"],
                                                          types=filters["types"] or None))


def events_live(request: Request) -> StreamingResponse:
    """Server-sent events after ``after`` (or the ``Last-Event-ID`` a reconnecting browser sends)."""
    reg = request.app.state.registry
    last = request.headers.get("last-event-id")
    after = reads.non_negative_int(last if last else request.query_params.get("after"), "after",
                                   default=reg.head())
    try:
        reg.follow(after)  # (checks ``after`` at once: a bad or future position is a 4xx, not a stream that dies)
    except DatabaseUnavailableError:
        pass  # (a restart: the feed follows once the database is back; a 503 would end the browser's EventSource)
    # (at most MAX_FEEDS at once, each holding a thread and a database connection: else a 503)
    stream = request.app.state.feeds.open(reg, after, **_filters(request))
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def diff(request: Request) -> JSONResponse:
    """``rlreg diff NAME A B --json`` with ``?a=&b=`` (numbers or ``@alias``)."""
    name = model_name(request)
    a, b = request.query_params.get("a"), request.query_params.get("b")
    if not a or not b:
        raise BadParameterError("diff needs ?a=VERSION&b=VERSION (numbers or @ALIAS)")
    return json_response(request.app.state.registry.diff(name, a.removeprefix("@"), b.removeprefix("@")))
