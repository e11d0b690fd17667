"""Model names, aliases and rlreg:// URIs: what is accepted, and errors that name the rule broken."""

from __future__ import annotations

import string

import pytest
import registry_toys as toys
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.errors import InvalidNameError
from registry.names import validate_alias, validate_name
from registry.uri import ModelRef, canonical_path, parse_uri, split_path


@pytest.mark.parametrize(
    "name", ["a", "policy", "team/cartpole/ppo", "v1.2_final-b", "x" * 200, "y2024/policy", "a/3b", "3a"]
)
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "is empty"),
        ("x" * 201, "is 201 characters long: at most 200"),
        ("a b", "whitespace or control characters"),
        ("a\tb", "whitespace or control characters"),
        ("a\x00b", "whitespace or control characters"),
        ("/a", "starts or ends with '/'"),
        ("a/", "starts or ends with '/'"),
        ("a//b", "empty segment"),
        ("a/../b", "'..' segment"),
        ("..", "'..' segment"),
        ("a@b", "contains '@'"),
        ("pol:icy", "contains ':'"),
        ("café", "contains 'é'"),
        ("policy/3", "has the all-digit segment '3'"),
        ("42", "has the all-digit segment '42'"),
        ("team/2024/policy", "has the all-digit segment '2024'"),
        ("a/٣", "contains '٣'"),
        ("a/²", "contains '²'"),
    ],
)
def test_invalid_names_name_the_rule(name, message):
    with pytest.raises(InvalidNameError) as info:
        validate_name(name)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)
    if name and len(name) <= 40:
        assert repr(name) in str(info.value)


def test_name_must_be_a_string():
    with pytest.raises(InvalidNameError, match="model name 7 is not a string"):
        validate_name(7)


@pytest.mark.parametrize("alias", ["prod", "best", "v1.0", "3", "a_b-c"])
def test_valid_aliases(alias):
    assert validate_alias(alias) == alias


@pytest.mark.parametrize("alias", ["", "a/b", "a b", "..", ".", "x@y", "x" * 101])
def test_invalid_aliases(alias):
    with pytest.raises(InvalidNameError, match="alias"):
        validate_alias(alias)


@pytest.mark.parametrize(
    ("uri", "ref"),
    [
        ("rlreg://policy", ModelRef("policy")),
        ("rlreg://policy/3", ModelRef("policy", version=3)),
        ("rlreg://team/y2024/policy/12", ModelRef("team/y2024/policy", version=12)),
        ("rlreg://team/policy@prod", ModelRef("team/policy", alias="prod")),
    ],
)
def test_parse_uri(uri, ref):
    assert parse_uri(uri) == ref
    assert str(ref) == uri


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://policy", "is not an rlreg:// URI"),
        ("rlreg://policy/0", "versions start at 1"),
        ("rlreg://po licy", "whitespace"),
        ("rlreg://policy@", "alias '' has 0 characters"),
        ("rlreg://policy@a/b", "'b' follows the alias"),
        ("rlreg://policy/3/p0", "'p0' follows the version"),
        ("rlreg://policy/٣", "contains '٣'"),
        ("rlreg://policy/²", "contains '²'"),
        ("rlreg://a/b/٣", "contains '٣'"),
        ("rlreg://policy@x@y", "one '@' per URI"),
        ("rlreg://", "is empty"),
    ],
)
def test_bad_uris(uri, message):
    with pytest.raises(InvalidNameError) as info:
        parse_uri(uri)
    assert message in str(info.value)


def test_split_path_grammar_needs_no_registry():
    assert split_path("team/policy/3/p0/metadata.json") == (ModelRef("team/policy", 3), "p0/metadata.json")
    assert split_path("team/policy") == (ModelRef("team/policy"), "")
    assert split_path("team/p0") == (ModelRef("team/p0"), "")  # a model, never team's p0 folder
    assert split_path("team/3/p0") == (ModelRef("team", 3), "p0")
    assert split_path("team@best/p0") == (ModelRef("team", alias="best"), "p0")
    assert split_path("team@latest/p0/x.json") == (ModelRef("team"), "p0/x.json")
    assert split_path("team/policy@best/metadata.json") == (ModelRef("team/policy", alias="best"), "metadata.json")
    assert split_path("team/3/0/module_state.json") == (ModelRef("team", 3), "0/module_state.json")


def test_canonical_path_spells_the_latest_explicitly():
    assert canonical_path("team") == "team@latest"
    assert canonical_path("team/p0") == "team/p0@latest"
    assert canonical_path("team@latest") == "team@latest"
    assert canonical_path("team/3/p0") == "team/3/p0"
    assert canonical_path("team@best/p0") == "team@best/p0"
    assert canonical_path("a/b/٣") == "a/b/٣"  # not a name: errors show it as written
    assert split_path(canonical_path("team") + "/p0") == (ModelRef("team"), "p0")


def test_unicode_digits_are_never_versions(reg):
    reg.snapshot("a/b", toys.spec().build())
    for text in ("٣", "²", "１"):
        with pytest.raises(InvalidNameError, match=f"alias '{text}' is not allowed"):
            reg.diff("a/b", 1, text)
        with pytest.raises(InvalidNameError, match=f"contains '{text}'"):
            parse_uri(f"rlreg://a/b/{text}")
    assert reg.diff("a/b", 1, "1").unchanged


def test_latest_is_a_reserved_alias(reg):
    reg.snapshot("pol", toys.spec().build())
    head = reg.head()
    with pytest.raises(InvalidNameError, match="alias 'latest' is reserved"):
        reg.set_alias("pol", "latest", 1)
    assert reg.head() == head


SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)
NAMES = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join).filter(
    lambda n: len(n) <= 200 and not any(s.isdigit() for s in n.split("/"))
)


@settings(max_examples=60, deadline=None)
@given(name=NAMES, version=st.integers(1, 10**6), alias=SEGMENT.filter(lambda a: a not in {".", "latest"}))
def test_every_valid_name_round_trips_through_uris(name, version, alias):
    assert validate_name(name) == name
    for ref in (ModelRef(name), ModelRef(name, version=version), ModelRef(name, alias=alias)):
        assert parse_uri(str(ref)) == ref
    assert split_path(f"{name}/{version}/p0/metadata.json") == (ModelRef(name, version), "p0/metadata.json")
    assert split_path(f"{name}@{alias}/p0") == (ModelRef(name, alias=alias), "p0")


def test_names_found_valid_are_remembered_within_a_bound_and_invalid_ones_never():
    from registry import names

    for i in range(names._VALID_KEPT + 10):
        validate_name(f"run{i}/policy")
    assert 0 < len(names._VALID) <= names._VALID_KEPT
    for bad in ["run1/policy/", "a b", "run/1"]:
        with pytest.raises(InvalidNameError):
            validate_name(bad)
        assert bad not in names._VALID

    class Named(str):  # a subclass may compare equal to a remembered name: checked in full
        pass

    with pytest.raises(InvalidNameError):
        validate_name(Named("a b"))
