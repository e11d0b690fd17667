"""The write endpoints: only with ``--allow-writes``, each behind ``Authorization: Bearer <token>``.

The order of the checks is the contract: a read-only server refuses every write (403); then a missing
or unknown token is refused (401); then the body is read (400 when unusable); only then does the
registry record anything, with the token's name as the actor of the events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from storage import jsondepth

from rlreg.web.api import json_response
from rlreg.web.errors import BadParameterError, ReadOnlyError
from rlreg.web.refs import PathRef, model_name, read_path


def writer(request: Request) -> tuple[Any, str]:
    """``(registry, actor)`` for a write request, or the 403/401 that refuses it."""
    state = request.app.state
    if not state.allow_writes:
        raise ReadOnlyError("this server is read-only: start it with `rlreg serve --allow-writes`")
    actor = state.tokens.authorize(request.headers.get("authorization"))
    return state.registry, actor


def as_actor(reg: Any, actor: str, action: Callable[[Any], Any]) -> Any:
    """``action(reg)`` with ``actor`` recorded as who made its events (``Registry.acting_as``, this thread).

    The events still name this server's user, host and process beside the token's name.
    """
    with reg.acting_as(actor):
        return action(reg)


async def body(request: Request) -> dict[str, Any]:
    """The request's JSON object (``{}`` when empty)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        # (depth-checked: a deeply nested body is refused; off the event loop, as a large body takes a while)
        value = await run_in_threadpool(jsondepth.loads, raw, "the request body")
    except (ValueError, UnicodeDecodeError) as exc:  # (JSONDecodeError and JSONDepthError are ValueErrors)
        raise BadParameterError(f"the request body is not JSON this server takes: {exc}") from None
    if not isinstance(value, dict):
        raise BadParameterError("the request body must be a JSON object")
    return value


async def _run(request: Request, action: Callable[[Any], Any], status: int = 200) -> JSONResponse:
    """Authorise, then run ``action(registry)`` in a worker thread; its result as JSON."""
    reg, actor = writer(request)
    result = await run_in_threadpool(as_actor, reg, actor, action)
    return json_response({"actor": actor, "result": result}, status=status)


def _alias_ref(request: Request) -> PathRef:
    ref = read_path(request.path_params["ref"])
    if not ref.alias or ref.inner:
        raise BadParameterError(f"{request.url.path!r}: expected /api/v1/aliases/NAME@ALIAS")
    return ref


def _version_ref(request: Request, inner: str = "") -> PathRef:
    ref = read_path(request.path_params["ref"])
    if ref.version is None or ref.inner != inner:
        raise BadParameterError(f"{request.url.path!r}: expected …/NAME/VERSION{'/' + inner if inner else ''}")
    return ref


def _reason(request: Request, data: dict[str, Any]) -> str:
    reason = data.get("reason", request.query_params.get("reason", ""))
    if not isinstance(reason, str) or not reason.strip():
        raise BadParameterError("deleting needs a reason: ?reason=TEXT or {\"reason\": TEXT}")
    return reason


def _force(request: Request, data: dict[str, Any]) -> bool:
    """``force`` from the body (``true``/``false``) or the query (``1``/``true``, ``0``/``false``); anything
    else is refused (a body's ``"false"`` is a string, which Python takes for true: it forced deletes)."""
    if "force" in data:
        value = data["force"]
        if not isinstance(value, bool):
            raise BadParameterError(f'"force" must be true or false in the JSON body, not {value!r}')
        return value
    query = request.query_params.get("force")
    if query is None or query.lower() in {"", "0", "false"}:
        return False
    if query.lower() in {"1", "true"}:
        return True
    raise BadParameterError(f"force={query!r}: expected 1 or true (0 or false)")


async def alias_set(request: Request) -> JSONResponse:
    """``PUT /api/v1/aliases/NAME@ALIAS`` with ``{"version": N}``: move the alias."""
    writer(request)
    ref = _alias_ref(request)
    version = (await body(request)).get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BadParameterError(f'expected {{"version": N}} with N a positive integer, got {version!r}')
    return await _run(request, lambda r: r.set_alias(ref.name, ref.alias, version))


async def alias_remove(request: Request) -> JSONResponse:
    """``DELETE /api/v1/aliases/NAME@ALIAS``."""
    writer(request)
    ref = _alias_ref(request)
    return await _run(request, lambda r: r.remove_alias(ref.name, ref.alias))


async def version_write(request: Request) -> JSONResponse:
    """Under ``/api/v1/versions/NAME/N``: ``POST …/tags``, ``DELETE …/tags?key=K``, ``DELETE`` the
    version (``?reason=``), ``POST …/restore``."""
    writer(request)
    ref = read_path(request.path_params["ref"])
    data = await body(request)
    route = (request.method, ref.inner)
    if route == ("POST", "tags"):
        tags = data.get("tags")
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise BadParameterError('expected {"tags": {"key": "value", ...}} with string values')
        ref = _version_ref(request, "tags")
        return await _run(request, lambda r: r.set_tags(ref.name, ref.version, tags))
    if route == ("DELETE", "tags"):
        keys = request.query_params.getlist("key") or data.get("keys")
        if not keys or not isinstance(keys, list):
            raise BadParameterError("expected ?key=K (repeatable) or {\"keys\": [...]} naming the tags to remove")
        ref = _version_ref(request, "tags")
        return await _run(request, lambda r: r.remove_tags(ref.name, ref.version, keys))
    if route == ("POST", "restore"):
        ref = _version_ref(request, "restore")
        return await _run(request, lambda r: r.restore_version(ref.name, ref.version))
    if route == ("DELETE", ""):
        ref, reason, force = _version_ref(request), _reason(request, data), _force(request, data)
        return await _run(request, lambda r: r.delete_version(ref.name, ref.version, reason=reason, force=force))
    raise BadParameterError(f"{request.method} {request.url.path!r}: no such write")


async def model_delete(request: Request) -> JSONResponse:
    """``DELETE /api/v1/models/NAME?reason=``: delete the whole model."""
    writer(request)
    name = model_name(request)  # (NAME/3 or NAME@prod is refused: never deleted as the whole model)
    data = await body(request)
    reason, force = _reason(request, data), _force(request, data)
    return await _run(request, lambda r: r.delete_model(name, reason=reason, force=force))


async def describe(request: Request) -> JSONResponse:
    """``PUT /api/v1/descriptions/NAME[/N]`` with ``{"description": TEXT}``: the model's or a version's."""
    writer(request)
    ref = read_path(request.path_params["ref"])
    text = (await body(request)).get("description")
    if not isinstance(text, str):
        raise BadParameterError('expected {"description": TEXT}')
    if ref.inner or ref.alias:
        raise BadParameterError(f"{request.url.path!r}: expected /api/v1/descriptions/NAME[/VERSION]")
    latest = ref.names_version and ref.version is None  # NAME@latest: the latest version's (not the model's)
    return await _run(request, lambda r: r.set_description(
        ref.name, text, version=r.version(ref.name).version if latest else ref.version))
