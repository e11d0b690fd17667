"""One grammar for references (CLI, API, rlreg://), promotion by alias, and "did you mean"."""

from __future__ import annotations

import pytest
from clihelpers import assert_error, small_module

from registry import InvalidNameError, NotFoundError
from registry.errors import InvalidReferenceError
from rlreg import exitcodes


@pytest.fixture
def walk(home_registry):
    """Model ``walk`` with versions 1 and 2, ``best`` on 1."""
    home_registry.snapshot("walk", small_module(1))
    home_registry.snapshot("walk", small_module(2))
    home_registry.set_alias("walk", "best", 1)
    return home_registry


@pytest.mark.parametrize("ref", ["walk:1", "walk@best", "rlreg://walk/1", "rlreg://walk@best", "walk/1"])
def test_show_takes_every_form_of_the_grammar(inproc, walk, ref):
    assert inproc("show", ref, "--json").json()["version"]["version"] == 1


def test_show_prints_what_versions_json_links_to(inproc, walk):
    assert inproc("show", "rlreg://walk", "--json").json()["version"]["version"] == 2
    assert inproc("show", "rlreg://walk@latest", "--json").json()["version"]["version"] == 2


@pytest.mark.parametrize("ref, fragment", [
    ("m:²", "reference 'm:²': expected NAME:VERSION with VERSION a positive integer"),
    ("walk:0", "reference 'walk:0': expected NAME:VERSION"),
    ("walk:1@best", "reference 'walk:1@best'"),
    ("s3://bucket/walk", "only rlreg:// URIs are references"),
    ("rlreg://walk/1/p0", "'p0' follows the version"),
])
def test_a_malformed_reference_is_one_line_exit_4(inproc, ref, fragment):
    assert_error(inproc("show", ref, code=None), exitcodes.INVALID, fragment)


def test_the_console_script_refuses_a_unicode_digit_without_a_traceback(rlreg):
    assert_error(rlreg("show", "m:²", code=None), exitcodes.INVALID, "reference 'm:²'")


def test_alias_set_promotes_by_alias(inproc, walk):
    moved = inproc("alias", "set", "walk", "prod", "@best", "--json").json()
    assert moved["payload"] == {"alias": "prod", "version": 1}
    inproc("alias", "set", "walk", "best", "2")
    assert walk.aliases("walk") == {"best": 2, "prod": 1}  # prod stays where best was
    assert_error(inproc("alias", "set", "walk", "prod", "@nope", code=None), exitcodes.NOT_FOUND,
                 "model 'walk' has no alias 'nope'")
    assert_error(inproc("alias", "set", "walk", "prod", "²", code=None), exitcodes.INVALID, "alias '²'")


def test_diff_takes_versions_and_aliases(inproc, walk):
    assert inproc("diff", "walk", "@best", "2", "--json").json()["a"] == 1


def test_unknown_model_names_get_a_did_you_mean(inproc, walk):
    for args in (("versions", "wlak"), ("show", "walkk:1"), ("history", "wakl"), ("show", "rlreg://wal@best")):
        assert_error(inproc(*args, code=None), exitcodes.NOT_FOUND, "(did you mean 'walk'?)")
    result = inproc("versions", "zebra", code=None)
    assert_error(result, exitcodes.NOT_FOUND, "no model named 'zebra'")
    assert "did you mean" not in result.err


def test_the_api_reads_references_too(walk):
    assert walk.version("walk:1").version == 1
    assert walk.version("rlreg://walk@best").version == 1
    assert walk.version("walk@latest").version == 2
    assert walk.diff("walk", "@best", "2").a == 1
    assert walk.spec("walk/2") == walk.spec("walk", 2)
    with pytest.raises(InvalidReferenceError, match="not both"):
        walk.version("walk:1", alias="best")
    with pytest.raises(InvalidNameError, match="expected NAME:VERSION"):
        walk.load("walk:²")
    with pytest.raises(NotFoundError, match=r"did you mean 'walk'\?"):
        walk.load("wal:1")
