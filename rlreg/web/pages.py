"""The HTML pages: models, a model, a version, a diff, the event feed. Rendered on the server."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from rlreg.output import event_summary, to_jsonable
from rlreg.show import spec_pairs
from rlreg.web import charts, reads
from rlreg.web.errors import BadParameterError, http_status
from rlreg.web.refs import PathRef, model_name, read_path

PAGE_LIMIT = 100  # versions shown before "show more"
MAX_PAGE = 1000  # the most versions one page shows (a where or a sort reaches the others)
DIFF_CHOICES = 200  # the newest versions offered in the diff page's pickers
EVENT_TYPES = ("SpecRecorded", "VersionRecorded", "AliasSet", "AliasRemoved")


class QueryLink:
    """The current page's URL with some query parameters changed (``None`` drops one)."""

    def __init__(self, request: Request) -> None:
        self.path = request.url.path
        self._params = dict(request.query_params)

    def params(self) -> dict[str, str]:
        """The current query parameters."""
        return dict(self._params)

    def __call__(self, **changes: Any) -> str:
        merged = {k: v for k, v in {**self._params, **changes}.items() if v not in (None, "")}
        return self.path + ("?" + urlencode(merged) if merged else "")


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """A page from ``templates/`` with the app's settings in its context."""
    context.setdefault("writes", request.app.state.allow_writes)
    context.setdefault("link", QueryLink(request))
    return request.app.state.templates.TemplateResponse(request, template, context, status_code=status)


def models_page(request: Request) -> Response:
    """Every model (name, versions, latest, aliases, last activity, description, tags); ``?q=`` filters."""
    q = request.query_params.get("q", "").strip()
    infos = [to_jsonable(m) for m in request.app.state.registry.models()]
    shown = [m for m in infos if q.lower() in m["name"].lower() or q.lower() in str(m.get("description") or "").lower()]
    return render(request, "models.html", models=shown, total=len(infos), q=q)


def model_or_version_page(request: Request) -> Response:
    """``/models/NAME`` is the model's page; ``/models/NAME/3`` or ``/models/NAME@alias`` a version's."""
    ref = read_path(request.path_params["ref"])
    if ref.inner:
        raise BadParameterError(f"{request.url.path!r}: nothing lives below a version's page ({ref.inner!r})")
    if ref.names_version:
        return version_page(request, ref)
    return model_page(request, ref.name)


def _versions_query(request: Request) -> dict[str, Any]:
    params = request.query_params
    return {
        "where": params.get("where", "").strip() or None,
        "order_by": params.get("sort", "").strip() or None,
        "limit": reads.positive_int(params.get("limit"), "limit", default=PAGE_LIMIT, maximum=MAX_PAGE),
        "include_deleted": params.get("deleted") in {"1", "on", "true"},
    }


def model_page(request: Request, name: str) -> Response:
    """A model: one page of its versions (where/sort/limit, in SQL), a chart of a numeric metadata key
    (a bounded series computed in SQL), alias history. Nothing here reads every version."""
    reg = request.app.state.registry
    info = to_jsonable(reads.model_info(reg, name))
    query = _versions_query(request)
    where_error, status = None, 200
    try:
        rows = reg.versions(name, where=query["where"], order_by=query["order_by"] or "-version",
                            limit=query["limit"], include_deleted=query["include_deleted"])
    except Exception as exc:  # a malformed where or sort: shown beside the form, as a 400
        known = http_status(exc)
        if known is None or known[0] != 400:
            raise
        where_error, status, rows = str(exc), 400, []
    keys = reg.numeric_metadata_keys(name, include_deleted=query["include_deleted"])
    key = request.query_params.get("chart") or charts.default_key(keys)
    chart = None
    if key:
        series = reg.metadata_series(name, key, max_points=charts.MAX_POINTS, include_deleted=query["include_deleted"])
        chart = charts.series_chart(series)
    columns = sorted({k for v in rows for k in (v.metadata or {})})
    return render(
        request, "model.html", status=status, info=info, rows=[to_jsonable(v) for v in rows],
        columns=columns, total=info["versions"], query=query, max_page=MAX_PAGE, sort=query["order_by"] or "",
        where_error=where_error, chart=chart, chart_keys=keys,
        aliases=[to_jsonable(e) for e in reads.alias_history(reg, name)],
    )


def version_page(request: Request, ref: PathRef) -> Response:
    """A version: spec, tensors, state, metadata, tags, actor and its ``rlreg://`` reference."""
    reg = request.app.state.registry
    doc = reads.version_document(reg, ref)
    mv = to_jsonable(doc["version"])
    return render(request, "version.html", v=mv, spec=spec_pairs(doc["spec"]), spec_json=to_jsonable(doc["spec"]),
                  tensors=sorted(doc["tensors"].items()), state=doc["state"],
                  total_bytes=sum(int(t.get("nbytes", 0)) for t in doc["tensors"].values()))


def diff_page(request: Request) -> Response:
    """Two versions side by side: tensors changed (max |a-b| as bars), added, removed; spec and metadata."""
    reg = request.app.state.registry
    name = model_name(request)  # (``/diff/NAME/3`` is refused, not read as NAME)
    info = to_jsonable(reads.model_info(reg, name))
    live = [v.version for v in reg.versions(name, order_by="-version", limit=DIFF_CHOICES)]
    # by default the two newest versions still there (latest - 1 may have been deleted: a 404 page)
    a = request.query_params.get("a") or str(live[1] if len(live) > 1 else (live[0] if live else 1))
    b = request.query_params.get("b") or str(live[0] if live else 1)
    result = reg.diff(name, a.removeprefix("@"), b.removeprefix("@"))
    return render(request, "diff.html", info=info, a=a, b=b, d=to_jsonable(result), result=result,
                  bars=charts.diff_bars(result.changed, result.shapes), versions=live)


def events_page(request: Request) -> Response:
    """The global log, newest first, paged by position (``before``), filtered by model and type; live."""
    reg = request.app.state.registry
    params = request.query_params
    stream = params.get("model", "").strip() or None
    types = frozenset(t for t in params.getlist("type") if t)
    limit = reads.positive_int(params.get("limit"), "limit", default=50, maximum=1000)
    page = reads.event_page(reg, before=reads.positive_int(params.get("before"), "before"), limit=limit,
                            stream=stream, types=types)
    rows = [{**to_jsonable(e), "summary": event_summary(e)} for e in page.events]
    return render(request, "events.html", page=page, rows=rows, model=stream or "", types=sorted(types),
                  event_types=sorted({*EVENT_TYPES, *types}), limit=limit)  # (the older page keeps the limit)
