"""Model names, aliases and rlreg:// URIs: what is accepted, and errors that name the rule broken."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.errors import InvalidNameError, NotFoundError
from registry.names import validate_alias, validate_name
from registry.uri import ModelRef, parse_uri, split_path


@pytest.mark.parametrize(
    "name", ["a", "policy", "team/cartpole/ppo", "v1.2_final-b", "x" * 200, "2024/policy", "a/3b", "3a"]
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
        ("policy/3", "ends in the all-digit segment '3'"),
        ("42", "ends in the all-digit segment '42'"),
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
        ("rlreg://team/2024/policy/12", ModelRef("team/2024/policy", version=12)),
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
        ("rlreg://policy@a/b", "an alias ends the URI"),
        ("rlreg://", "is empty"),
    ],
)
def test_bad_uris(uri, message):
    with pytest.raises(InvalidNameError) as info:
        parse_uri(uri)
    assert message in str(info.value)


def test_split_path_finds_the_longest_registered_name():
    names = {"team", "team/policy"}
    assert split_path("team/policy/3/p0/metadata.json", names) == (ModelRef("team/policy", 3), "p0/metadata.json")
    assert split_path("team/policy", names) == (ModelRef("team/policy"), "")
    assert split_path("team/metadata.json", names) == (ModelRef("team"), "metadata.json")
    assert split_path("team/policy@best/metadata.json", set()) == (
        ModelRef("team/policy", alias="best"), "metadata.json"
    )
    with pytest.raises(NotFoundError, match="no model named by rlreg://other/3"):
        split_path("other/3", names)


SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=12).filter(
    lambda s: s != ".."
)
NAMES = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join).filter(
    lambda n: len(n) <= 200 and not n.rsplit("/", 1)[-1].isdigit()
)


@settings(max_examples=60, deadline=None)
@given(name=NAMES, version=st.integers(1, 10**6), alias=SEGMENT.filter(lambda a: a != "."))
def test_every_valid_name_round_trips_through_uris(name, version, alias):
    assert validate_name(name) == name
    for ref in (ModelRef(name), ModelRef(name, version=version), ModelRef(name, alias=alias)):
        assert parse_uri(str(ref)) == ref
    assert split_path(f"{name}/{version}/p0/metadata.json", {name}) == (ModelRef(name, version), "p0/metadata.json")
