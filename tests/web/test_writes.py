"""Writes: only with --allow-writes, only with a token; the token's name is the actor; 401 records nothing."""

from __future__ import annotations

import html
import re

import pytest
from webclient import ALICE, CI_BOT, ASGIClient
from webtoys import MODEL

from rlreg.web import create_app, parse_tokens
from rlreg.web.auth import TokenSettingError


def test_alias_set_and_remove_with_a_token(writable):
    c, reg = writable
    r = c.request("PUT", f"/api/v1/aliases/{MODEL}@staging", json={"version": 2}, headers=ALICE)
    assert r.status_code == 200, r.text
    assert r.json()["actor"] == "alice" and r.json()["result"]["type"] == "AliasSet"
    assert reg.aliases(MODEL)["staging"] == 2
    r = c.request("DELETE", f"/api/v1/aliases/{MODEL}@staging", headers=CI_BOT)
    assert r.status_code == 200 and r.json()["actor"] == "ci-bot"
    assert "staging" not in reg.aliases(MODEL)


def test_the_token_name_is_the_actor_of_the_event(writable):
    c, reg = writable
    r = c.request("PUT", f"/api/v1/aliases/{MODEL}@prod", json={"version": 1}, headers=CI_BOT)
    assert r.status_code == 200
    event = reg.history(MODEL)[-1]
    assert event.type == "AliasSet" and event.payload["alias"] == "prod"
    assert event.actor["actor"] == "ci-bot"
    assert event.actor["user"] and event.actor["host"]  # the server's process is still named beside the token


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token-0123456789"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic YWxpY2U6YWxpY2U="},
    {"Authorization": "alice-token-0123456789"},
    {"Authorization": "Bearer alice-token-012345678"},  # one character short
])
def test_no_or_wrong_token_is_401_and_nothing_is_recorded(writable, headers):
    c, reg = writable
    head = reg.head()
    for method, url, body in [
        ("PUT", f"/api/v1/aliases/{MODEL}@prod", {"version": 1}),
        ("DELETE", f"/api/v1/aliases/{MODEL}@prod", None),
        ("POST", f"/api/v1/versions/{MODEL}/2/tags", {"tags": {"stage": "eval"}}),
        ("DELETE", f"/api/v1/versions/{MODEL}/2/tags?key=stage", None),
        ("PUT", f"/api/v1/descriptions/{MODEL}", {"description": "x"}),
        ("DELETE", f"/api/v1/versions/{MODEL}/1?reason=junk", None),
        ("POST", f"/api/v1/versions/{MODEL}/1/restore", None),
        ("DELETE", f"/api/v1/models/{MODEL}?reason=junk", None),
    ]:
        r = c.request(method, url, json=body, headers=headers)
        assert r.status_code == 401, (method, url, r.text)
        assert r.json()["error"]["type"] == "UnauthorizedError"
    assert reg.head() == head
    assert reg.aliases(MODEL) == {"best": 4, "prod": 4}


def test_a_read_only_server_refuses_writes_with_403_even_with_a_token(fresh):
    reg = fresh.open()
    c = ASGIClient(create_app(reg, tokens=parse_tokens("alice:alice-token-0123456789")))
    try:
        head = reg.head()
        r = c.request("PUT", f"/api/v1/aliases/{MODEL}@prod", json={"version": 1}, headers=ALICE)
        assert r.status_code == 403 and "--allow-writes" in r.json()["error"]["message"]
        assert reg.head() == head
    finally:
        c.close()
        reg.close()


@pytest.mark.parametrize("body, fragment", [
    ({"version": "two"}, "positive integer"),
    ({"version": 0}, "positive integer"),
    ({}, "positive integer"),
])
def test_bad_write_bodies_are_400(writable, body, fragment):
    c, reg = writable
    head = reg.head()
    r = c.request("PUT", f"/api/v1/aliases/{MODEL}@prod", json=body, headers=ALICE)
    assert r.status_code == 400 and fragment in r.json()["error"]["message"]
    assert reg.head() == head


def test_body_that_is_not_json_is_400(writable):
    c, _ = writable
    r = c.request("PUT", f"/api/v1/aliases/{MODEL}@prod", content=b"{not json", headers=ALICE)
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]


def test_alias_to_a_missing_version_is_404_and_records_nothing(writable):
    c, reg = writable
    head = reg.head()
    r = c.request("PUT", f"/api/v1/aliases/{MODEL}@prod", json={"version": 99}, headers=ALICE)
    assert r.status_code == 404 and reg.head() == head


def test_tags_description_delete_restore_reach_the_registry(writable):
    c, reg = writable
    calls = [
        ("POST", f"/api/v1/versions/{MODEL}/2/tags", {"tags": {"stage": "eval"}}, "TagsSet"),
        ("DELETE", f"/api/v1/versions/{MODEL}/2/tags?key=stage", None, "TagsRemoved"),
        ("PUT", f"/api/v1/descriptions/{MODEL}", {"description": "<b>cartpole</b>"}, "DescriptionSet"),
        ("PUT", f"/api/v1/descriptions/{MODEL}/2", {"description": "v2"}, "DescriptionSet"),
        ("DELETE", f"/api/v1/versions/{MODEL}/1?reason=junk", None, "VersionDeleted"),
        ("POST", f"/api/v1/versions/{MODEL}/1/restore", None, "VersionRestored"),
    ]
    for method, url, body, recorded in calls:
        head = reg.head()
        r = c.request(method, url, json=body, headers=ALICE)
        assert r.status_code == 200, (url, r.text)
        assert r.json()["actor"] == "alice" and r.json()["result"]["type"] == recorded, r.text
        (event,) = reg.events(after=head)
        assert event.type == recorded and event.actor["actor"] == "alice"
    assert reg.version(MODEL, 2).description == "v2" and reg.version(MODEL, 2).tags == {}
    assert {m.name: m.description for m in reg.models()}[MODEL] == "<b>cartpole</b>"
    assert [v.version for v in reg.versions(MODEL)] == [1, 2, 3, 4, 5]


def test_deleting_needs_a_reason(writable):
    c, reg = writable
    head = reg.head()
    r = c.request("DELETE", f"/api/v1/versions/{MODEL}/1", headers=ALICE)
    assert r.status_code == 400 and "reason" in r.json()["error"]["message"]
    assert reg.head() == head


def test_allow_writes_without_tokens_is_refused(fresh):
    from rlreg.web.errors import BadParameterError

    with pytest.raises(BadParameterError, match="RLREG_SERVE_TOKENS"):
        create_app(None, allow_writes=True, tokens=parse_tokens(""))


@pytest.mark.parametrize("text, fragment", [
    ("alice", "expected NAME:TOKEN"),
    ("al ice:0123456789abcdef0", "expected NAME:TOKEN"),
    ("alice:short", "at least 16"),
    ("alice:sha256:abc", "64 hex digits"),
    ("alice:0123456789abcdef0,alice:0123456789abcdef1", "appears twice"),
])
def test_bad_token_settings_are_named(text, fragment):
    with pytest.raises(TokenSettingError, match=fragment):
        parse_tokens(text)


def test_tokens_are_kept_only_as_digests():
    tokens = parse_tokens("alice:alice-token-0123456789")
    assert b"alice-token" not in repr(tokens).encode() and "alice-token" not in repr(tokens.entries)
    assert tokens.holder("alice-token-0123456789") == "alice"
    assert tokens.holder("alice-token-0123456788") is None


def test_deleted_versions_are_hidden_marked_on_request_and_restorable(writable):
    c, reg = writable
    r = c.request("DELETE", f"/api/v1/versions/{MODEL}/1?reason=wrong%20place", headers=ALICE)
    assert r.status_code == 200, r.text
    assert f'href="/models/{MODEL}/1"' not in c.get(f"/models/{MODEL}").text
    marked = c.get(f"/models/{MODEL}?deleted=1").text
    assert 'data-version="1"' in marked and '<span class="badge">deleted</span>' in marked
    # its row links nowhere (its page is a 404 naming the deletion), and no link of the page is a dead end
    assert f'href="/models/{MODEL}/1"' not in marked
    for link in set(re.findall(r'href="(/models/[^"?]*)"', marked)):
        assert c.get(html.unescape(link)).status_code == 200, link
    gone = c.get(f"/api/v1/versions/{MODEL}/1")
    assert gone.status_code == 404 and "wrong place" in gone.json()["error"]["message"]
    assert c.request("POST", f"/api/v1/versions/{MODEL}/1/restore", headers=ALICE).status_code == 200
    assert c.get(f"/api/v1/versions/{MODEL}/1").status_code == 200


def test_deleting_a_model_path_that_names_a_version_or_alias_is_400_and_deletes_nothing(writable):
    """``DELETE /api/v1/models/NAME/3`` (or ``NAME@prod``) deleted the whole model: the version was dropped."""
    c, reg = writable
    before = [v.version for v in reg.versions(MODEL)]
    for path in (f"/api/v1/models/{MODEL}/3", f"/api/v1/models/{MODEL}@prod"):
        r = c.request("DELETE", path, params={"reason": "one version", "force": "1"}, headers=ALICE)
        assert r.status_code == 400 and "/api/v1/versions/NAME/VERSION" in r.json()["error"]["message"], r.text
    assert [v.version for v in reg.versions(MODEL)] == before and reg.aliases(MODEL)


@pytest.mark.parametrize("force", ["false", "0", 0, None, "yes"])
def test_force_in_a_body_must_be_true_or_false(writable, force):
    """``{"force": "false"}`` is a string Python takes for true: it forced the delete and removed the aliases."""
    c, reg = writable
    aliases = reg.aliases(MODEL)
    r = c.request("DELETE", f"/api/v1/versions/{MODEL}/{aliases['prod']}", json={"reason": "x", "force": force},
                  headers=ALICE)
    assert r.status_code == 400 and '"force" must be true or false' in r.json()["error"]["message"], r.text
    assert reg.aliases(MODEL) == aliases


def test_a_write_is_authorised_before_its_path_or_body_is_read(writable, fresh):
    """401 for no token (not 400 for the malformed path it also has), as the docs order the checks."""
    c, _ = writable
    assert c.request("DELETE", "/api/v1/aliases/no-alias-here").status_code == 401
    assert c.request("DELETE", f"/api/v1/models/{MODEL}/3", params={"reason": "x"}).status_code == 401


def test_a_deeply_nested_body_is_400(writable):
    c, _ = writable
    body = '{"version": ' + "[" * 100_000 + "]" * 100_000 + "}"
    r = c.request("PUT", f"/api/v1/aliases/{MODEL}@x", content=body, headers={**ALICE, "content-type": "application/json"})
    assert r.status_code == 400 and "not JSON this server takes" in r.text, r.text[:300]


def test_describing_name_at_latest_describes_the_latest_version(writable):
    c, reg = writable
    r = c.request("PUT", f"/api/v1/descriptions/{MODEL}@latest", json={"description": "the newest"}, headers=ALICE)
    assert r.status_code == 200, r.text
    latest = reg.version(MODEL)
    assert r.json()["result"]["payload"].get("version") == latest.version
