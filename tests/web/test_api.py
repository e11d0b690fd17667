"""The JSON API through the app's ASGI interface: every endpoint, its shape, and its errors."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load as load_safetensors
from webtoys import MODEL, OTHER, RETURNS

from rlreg.output import to_jsonable


def test_models_have_the_shape_of_rlreg_models_json(client, read_registry):
    r = client.get("/api/v1/models")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == to_jsonable(read_registry.models())
    assert [m["name"] for m in r.json()] == [MODEL, OTHER]


def test_one_model(client):
    r = client.get(f"/api/v1/models/{MODEL}")
    assert r.status_code == 200
    assert r.json()["name"] == MODEL and r.json()["aliases"] == {"best": 4, "prod": 4}


def test_versions_list_is_rlreg_versions_json(client, read_registry):
    r = client.get(f"/api/v1/versions/{MODEL}")
    assert r.status_code == 200
    assert r.json() == to_jsonable(read_registry.versions(MODEL))
    assert [v["metadata"]["mean_return"] for v in r.json()] == RETURNS


@pytest.mark.parametrize("path", [f"{MODEL}/4", f"{MODEL}@best", f"{MODEL}@prod"])
def test_one_version_is_rlreg_show_json(client, read_registry, path):
    r = client.get(f"/api/v1/versions/{path}")
    assert r.status_code == 200
    doc = r.json()
    assert doc["version"] == to_jsonable(read_registry.version(MODEL, 4))
    assert doc["spec"] == read_registry.spec(MODEL, 4)
    assert doc["tensors"] == read_registry.manifest(MODEL, 4)["tensors"]
    assert doc["version"]["uri"] == f"rlreg://{MODEL}/4"


def test_latest_spelled_explicitly_is_one_version(client):
    assert client.get(f"/api/v1/versions/{MODEL}@latest").json()["version"]["version"] == len(RETURNS)


def test_tensor_is_served_verified_as_safetensors(client, read_registry):
    name = sorted(read_registry.manifest(MODEL, 3)["tensors"])[0]
    r = client.get(f"/api/v1/versions/{MODEL}/3/tensors/{name}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert "attachment" in r.headers["content-disposition"]
    got = load_safetensors(r.content)
    expected = read_registry.tensors(MODEL, 3, [name])[name]
    assert list(got) == [name] and got[name].dtype == expected.dtype and bool((got[name] == expected).all())
    assert r.headers["x-rlreg-digest"] == read_registry.manifest(MODEL, 3)["tensors"][name]["digest"]


def test_tensor_of_a_damaged_object_is_refused_not_served(fresh):
    from pathlib import Path

    from webclient import ASGIClient

    from rlreg.web import create_app

    reg = fresh.open()
    entry = reg.manifest(MODEL, 2)["tensors"]
    name = max(entry, key=lambda k: entry[k]["nbytes"])
    digest = entry[name]["object"].rpartition(":")[2]
    damaged = [p for p in Path(fresh.storage).rglob("*") if p.is_file() and digest in p.name]
    assert damaged, "the object file of the tensor was not found"
    data = bytearray(damaged[0].read_bytes())
    data[-1] ^= 0xFF
    damaged[0].write_bytes(bytes(data))
    c = ASGIClient(create_app(reg))
    try:
        r = c.get(f"/api/v1/versions/{MODEL}/2/tensors/{name}")
    finally:
        c.close()
        reg.close()
    assert r.status_code == 500, r.text
    assert r.json()["error"]["type"] == "IntegrityError"


def test_history_is_rlreg_history_json(client, read_registry):
    r = client.get(f"/api/v1/history/{MODEL}")
    assert r.json() == to_jsonable(read_registry.history(MODEL))


def test_aliases(client):
    assert client.get(f"/api/v1/aliases/{MODEL}").json() == {"best": 4, "prod": 4}


def test_events_after_and_limit(client, read_registry):
    r = client.get("/api/v1/events?after=3&limit=4")
    assert r.json() == to_jsonable(read_registry.events(after=3, limit=4))
    assert [e["position"] for e in r.json()] == [4, 5, 6, 7]


def test_events_filtered_by_model_and_type(client):
    rows = client.get(f"/api/v1/events?model={MODEL}&type=AliasSet").json()
    assert [(e["stream"], e["type"], e["payload"]["alias"]) for e in rows] == [
        (MODEL, "AliasSet", "prod"), (MODEL, "AliasSet", "best"), (MODEL, "AliasSet", "prod")]


def test_events_filtered_by_model_count_the_matches_towards_the_limit(client, read_registry):
    """``limit`` counts events of the model (it counted the log's: a page of other models' events came back
    empty although the model had events after ``after``, and a client paging by position stopped)."""
    wanted = [e.position for e in read_registry.events() if e.stream == MODEL and e.type == "AliasSet"]
    rows = client.get(f"/api/v1/events?after=0&limit=2&model={MODEL}&type=AliasSet").json()
    assert [e["position"] for e in rows] == wanted[:2]
    rest = client.get(f"/api/v1/events?after={rows[-1]['position']}&limit=2&model={MODEL}&type=AliasSet").json()
    assert [e["position"] for e in rest] == wanted[2:4]


def test_events_of_the_registrys_own_stream(client, read_registry):
    """``model=$registry`` (the storage binding's events), as the live feed streams them (it was refused)."""
    rows = client.get("/api/v1/events?model=$registry").json()
    assert rows and {e["stream"] for e in rows} == {"$registry"}
    assert [e["position"] for e in rows] == [e.position for e in read_registry.events() if e.stream == "$registry"]


def test_diff_is_rlreg_diff_json(client, read_registry):
    r = client.get(f"/api/v1/diff/{MODEL}?a=1&b=@best")
    assert r.status_code == 200
    assert r.json() == to_jsonable(read_registry.diff(MODEL, 1, "best"))
    assert r.json()["metadata_changes"]["mean_return"] == [RETURNS[0], RETURNS[3]]


def test_healthz(client, read_registry):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True, "head": read_registry.head(), "writes": False}


def test_healthz_is_503_when_the_database_is_gone(fresh):
    """A dropped database is "not found" to the other endpoints; to a health check the service is down."""
    from webclient import ASGIClient

    from registry.errors import NotFoundError
    from rlreg.web import create_app

    reg = fresh.open()
    try:
        def gone():
            raise NotFoundError("reading the head: database 'x' does not exist on the server")

        reg.head = gone
        r = ASGIClient(create_app(reg)).get("/healthz")
        assert r.status_code == 503 and r.json()["ok"] is False and "does not exist" in r.json()["error"]
    finally:
        reg.close()


def test_openapi_lists_exactly_the_api_routes(client):
    from starlette.routing import Route

    from rlreg.web.app import ROUTES

    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    served: dict[str, set[str]] = {}
    for route in ROUTES:
        if isinstance(route, Route) and route.path.startswith(("/api/", "/healthz")):
            path = route.path.replace(":path}", "}")
            served.setdefault(path, set()).update(m.lower() for m in route.methods - {"HEAD"})
    documented = {path: set(ops) for path, ops in doc["paths"].items()}
    assert documented == served


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url, fragment", [
    ("/api/v1/models/nobody", "no model named 'nobody'"),
    ("/api/v1/versions/nobody", "no model named 'nobody'"),
    (f"/api/v1/versions/{MODEL}/99", "has no version 99"),
    (f"/api/v1/versions/{MODEL}@nosuchalias", "has no alias 'nosuchalias'"),
    (f"/api/v1/versions/{MODEL}/2/tensors/not-a-tensor", "no tensor 'not-a-tensor'"),
    ("/api/v1/history/nobody", "no model named 'nobody'"),
    ("/api/v1/aliases/nobody", "no model named 'nobody'"),
    (f"/api/v1/diff/{MODEL}?a=1&b=77", "has no version 77"),
    ("/api/v1/no-such-endpoint", "no page at '/api/v1/no-such-endpoint'"),
])
def test_unknown_things_are_404_json(client, url, fragment):
    r = client.get(url)
    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["status"] == 404 and fragment in r.json()["error"]["message"]


@pytest.mark.parametrize("url, fragment", [
    ("/api/v1/versions/bad name", "whitespace"),
    ("/api/v1/versions/%3Cscript%3E", "'<script>'"),
    ("/api/v1/events?after=-1", "after='-1'"),
    ("/api/v1/events?limit=lots", "limit='lots'"),
    (f"/api/v1/versions/{MODEL}?limit=0", "limit='0'"),
    (f"/api/v1/diff/{MODEL}?a=1", "needs ?a=VERSION&b=VERSION"),
    (f"/api/v1/versions/{MODEL}/2/elsewhere", "expected …/versions/NAME"),
    ("/api/v1/events?after=" + "9" * 5000, "out of range"),  # (int() refuses past 4,300 digits: a 500 before)
    (f"/api/v1/versions/{MODEL}/" + "9" * 5000, "out of range"),
    (f"/api/v1/diff/{MODEL}?a=1&b=" + "9" * 5000, "out of range"),
    (f"/api/v1/models/{MODEL}/3", "expected a model name"),  # (answered the whole model before)
    (f"/api/v1/history/{MODEL}@prod", "expected a model name"),
    (f"/api/v1/diff/{MODEL}/3?a=1&b=2", "expected a model name"),
    (f"/api/v1/diff/{MODEL}?a=1&b=@@@prod", "@@prod"),
])
def test_bad_input_is_400_json_naming_it(client, url, fragment):
    r = client.get(url)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]["message"]


def test_versions_are_filtered_sorted_and_limited(client):
    r = client.get(f"/api/v1/versions/{MODEL}", params={"where": "metadata.mean_return > 20",
                                                        "order_by": "-metadata.mean_return", "limit": "2"})
    assert r.status_code == 200, r.text
    assert [(v["version"], v["metadata"]["mean_return"]) for v in r.json()] == [(4, 95.5), (5, 61.0)]


def test_malformed_where_is_400_naming_the_token(client):
    r = client.get(f"/api/v1/versions/{MODEL}", params={"where": "metadata.mean_return >> 1"})
    assert r.status_code == 400, r.text
    assert ">>" in r.json()["error"]["message"] or "'>'" in r.json()["error"]["message"]


def test_method_not_allowed_is_405_json(client):
    r = client.request("PATCH", "/api/v1/models")
    assert r.status_code == 405 and r.json()["error"]["status"] == 405


def test_every_response_carries_the_security_headers(client):
    for url in ("/api/v1/models", "/", "/api/v1/versions/nobody"):
        headers = client.get(url).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"


def test_json_documents_are_strict_json(client):
    text = client.get(f"/api/v1/diff/{MODEL}?a=1&b=5").text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
