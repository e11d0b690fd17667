"""The OpenAPI 3.1 document of ``/api/v1/`` (served at ``/api/v1/openapi.json``).

Written out rather than generated: the responses are the command line's ``--json`` documents, whose
shapes are stated here once. ``tests/web`` checks that it lists exactly the app's API routes.
"""

from __future__ import annotations

from typing import Any

OBJ = {"type": "object"}
ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _q(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def _p(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _ok(schema: dict, description: str = "ok", media: str = "application/json") -> dict:
    return {"200": {"description": description, "content": {media: {"schema": schema}}},
            "400": ERROR, "404": ERROR, "503": ERROR}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str) -> dict:
    return {"type": "array", "items": _ref(name)}


WRITE = {"security": [{"bearer": []}], "responses": {"200": {"description": "recorded", "content": {
    "application/json": {"schema": {"type": "object", "properties": {"actor": {"type": "string"}, "result": {}}}}}},
    "400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR, "409": ERROR}}
NAME = _p("name", "model name (may contain '/')")
REF = _p("ref", "NAME, NAME/VERSION or NAME@ALIAS (the rlreg:// grammar), then tensors/TENSOR for one tensor")
ALIAS_REF = _p("ref", "NAME@ALIAS")


def _write(summary: str, params: list[dict], body: dict | None = None) -> dict:
    op = {"summary": summary, "parameters": params, **WRITE}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def document(version: str) -> dict[str, Any]:
    """The OpenAPI document of this app."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "rlreg", "version": version,
                 "description": "The registry's JSON API: the documents of `rlreg … --json`."},
        "paths": {
            "/healthz": {"get": {"summary": "liveness and the log's head", "responses": _ok(OBJ)}},
            "/api/v1/openapi.json": {"get": {"summary": "this document", "responses": _ok(OBJ)}},
            "/api/v1/models": {"get": {"summary": "rlreg models --json", "responses": _ok(_list("ModelInfo"))}},
            "/api/v1/models/{name}": {
                "get": {"summary": "one model", "parameters": [NAME], "responses": _ok(_ref("ModelInfo"))},
                "delete": _write("delete a model", [NAME, _q("reason", "why (required)"), _q("force", "1: also remove its aliases")]),
            },
            "/api/v1/versions/{ref}": {
                "get": {"summary": "NAME: its versions (rlreg versions --json); NAME/N or NAME@ALIAS: rlreg show "
                                   "--json; NAME/N/tensors/T: one verified tensor as safetensors bytes",
                        "parameters": [REF, _q("where", "filter, the CLI's where language"),
                                       _q("order_by", "e.g. -metadata.mean_return"),
                                       _q("limit", "at most this many", {"type": "integer", "minimum": 1}),
                                       _q("deleted", "1: include deleted versions")],
                        "responses": {**_ok({"oneOf": [_list("ModelVersion"), _ref("VersionDocument")]}),
                                      "200": {"description": "JSON, or application/octet-stream (safetensors) for a tensor",
                                              "content": {"application/json": {"schema": {"oneOf": [_list("ModelVersion"), _ref("VersionDocument")]}},
                                                          "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}},
                "post": _write("NAME/N/tags: set tags; NAME/N/restore: restore a deleted version", [REF],
                               {"type": "object", "properties": {"tags": {"type": "object", "additionalProperties": {"type": "string"}}}}),
                "delete": _write("NAME/N: delete the version (?reason=); NAME/N/tags?key=K: remove tags",
                                 [REF, _q("reason", "why"), _q("key", "tag to remove (repeatable)"), _q("force", "1: also remove aliases")]),
            },
            "/api/v1/history/{name}": {"get": {"summary": "rlreg history --json", "parameters": [NAME],
                                               "responses": _ok(_list("Event"))}},
            "/api/v1/aliases/{ref}": {
                "get": {"summary": "{alias: version} of model NAME", "parameters": [_p("ref", "NAME")],
                        "responses": _ok({"type": "object", "additionalProperties": {"type": "integer"}})},
                "put": _write("point ALIAS at a version", [ALIAS_REF],
                              {"type": "object", "required": ["version"], "properties": {"version": {"type": "integer"}}}),
                "delete": _write("remove ALIAS", [ALIAS_REF]),
            },
            "/api/v1/events": {"get": {"summary": "rlreg events --json (ascending by position)",
                                       "parameters": [_q("after", "position", {"type": "integer", "minimum": 0}),
                                                      _q("limit", "at most", {"type": "integer", "minimum": 1}),
                                                      _q("model", "only this model's stream"), _q("type", "only this type (repeatable)")],
                                       "responses": _ok(_list("Event"))}},
            "/api/v1/events/live": {"get": {"summary": "server-sent events (id = position) as they commit",
                                            "parameters": [_q("after", "position (default: the head)"),
                                                           _q("model", "only this model"), _q("type", "only this type")],
                                            "responses": _ok({"type": "string"}, "event stream", "text/event-stream")}},
            "/api/v1/diff/{name}": {"get": {"summary": "rlreg diff --json", "parameters": [
                NAME, {**_q("a", "version or @alias"), "required": True}, {**_q("b", "version or @alias"), "required": True}],
                "responses": _ok(_ref("ModelDiff"))}},
            "/api/v1/descriptions/{ref}": {"put": _write("describe a model (NAME) or a version (NAME/N)", [REF],
                                                         {"type": "object", "properties": {"description": {"type": "string"}}})},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a token of RLREG_SERVE_TOKENS; its name is the events' actor"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "status": {"type": "integer"}, "label": {"type": "string"}, "type": {"type": ["string", "null"]},
                    "message": {"type": "string"}}}}},
                "ModelInfo": {"type": "object", "properties": {
                    "name": {"type": "string"}, "latest_version": {"type": ["integer", "null"]},
                    "versions": {"type": "integer"}, "aliases": {"type": "object"},
                    "created_at": {"type": ["string", "null"]}, "updated_at": {"type": ["string", "null"]}}},
                "ModelVersion": {"type": "object", "properties": {
                    "name": {"type": "string"}, "version": {"type": "integer"}, "created_at": {"type": "string"},
                    "metadata": {"type": "object"}, "aliases": {"type": "array", "items": {"type": "string"}},
                    "spec_digest": {"type": "string"}, "tensor_bytes": {"type": "integer"},
                    "position": {"type": "integer"}, "uri": {"type": "string"}}},
                "VersionDocument": {"type": "object", "properties": {
                    "version": _ref("ModelVersion"), "spec": OBJ, "tensors": OBJ, "state": {}}},
                "Event": {"type": "object", "properties": {
                    "position": {"type": "integer"}, "stream": {"type": "string"},
                    "stream_version": {"type": "integer"}, "type": {"type": "string"}, "payload": {},
                    "timestamp": {"type": "string"}, "id": {"type": "string"}}},
                "ModelDiff": {"type": "object", "properties": {
                    "name": {"type": "string"}, "a": {"type": "integer"}, "b": {"type": "integer"},
                    "added": {"type": "array"}, "removed": {"type": "array"}, "changed": OBJ,
                    "unchanged": {"type": "array"}, "spec_changes": OBJ, "state_changes": OBJ,
                    "metadata_changes": OBJ}},
            },
        },
    }
