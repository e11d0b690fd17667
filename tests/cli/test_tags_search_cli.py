"""``rlreg tag/untag/describe``, ``versions --where/--sort/--limit`` and ``storage show/move``."""

from __future__ import annotations

import shutil

from clihelpers import assert_error, small_module

from rlreg import exitcodes


def test_tag_describe_and_search(inproc, home_registry):
    module = small_module(3)
    for value in (10, 300, 200):
        home_registry.snapshot("walk", module, {"mean_return": value})
    assert inproc("tag", "walk:2", "stage=eval", "seed=3").out.strip().startswith("walk:2 tagged stage=eval, seed=3 (event ")
    inproc("tag", "walk:3", "stage=eval")
    home_registry.set_alias("walk", "best", 2)
    assert inproc("untag", "walk@best", "seed", "--json").json()["payload"] == {"version": 2, "keys": ["seed"]}
    inproc("describe", "walk", "PPO walker")
    inproc("describe", "walk:2", "best so far")

    table = inproc("versions", "walk", "--where", 'metadata.mean_return > 100 and tags.stage = "eval"',
                   "--sort", "-metadata.mean_return", "--limit", "5").out.splitlines()
    assert table[0] == "PPO walker"
    assert table[2].split()[:2] == ["VERSION", "CREATED"] and "TAGS" in table[2] and "DESCRIPTION" in table[2]
    assert [line.split()[0] for line in table[3:]] == ["2", "3"]
    assert "stage=eval" in table[3] and "best so far" in table[3]
    listed = inproc("versions", "walk", "--sort", "-version", "--limit", "1", "--json").json()
    assert [v["version"] for v in listed] == [3] and listed[0]["tags"] == {"stage": "eval"}
    shown = inproc("show", "walk@best").out
    assert "tags:         stage=eval" in shown and "description:  best so far" in shown
    assert "model:        walk (PPO walker)" in shown
    assert "version 2: removed seed" in inproc("history", "walk").out

    before = len(home_registry.events())
    assert_error(inproc("versions", "walk", "--where", "metadata.x >> 3", code=None), exitcodes.INVALID,
                 "where 'metadata.x >> 3': at character 13 '>': expected a value")
    assert_error(inproc("tag", "walk:2", "novalue", code=None), exitcodes.INVALID, "tag 'novalue': expected KEY=VALUE")
    assert_error(inproc("tag", "walk", "a=b", code=None), exitcodes.INVALID, "name a version, e.g. walk:3")
    assert_error(inproc("tag", "walk:9", "a=b", code=None), exitcodes.NOT_FOUND, "has no version 9")
    assert_error(inproc("untag", "walk:1", "stage", code=None), exitcodes.NOT_FOUND, "has no tag 'stage'")
    assert len(home_registry.events()) == before


def test_storage_is_recorded_refused_and_moved(rlreg, inproc, home_registry, tmp_path):
    home_registry.snapshot("walk", small_module(4))
    blobs = rlreg.home / "blobs"
    shown = inproc("storage", "show").out
    assert shown.splitlines()[0] == f"storage: file://{blobs}" and f"created -> file://{blobs}" in shown

    elsewhere = tmp_path / "elsewhere"
    refused = rlreg("models", "--storage", str(elsewhere), code=None)
    assert_error(refused, exitcodes.INVALID, f"keeps its objects at 'file://{blobs}'",
                 f"was given 'file://{elsewhere}'", f"rlreg storage move file://{elsewhere}")
    assert not elsewhere.exists()

    elsewhere.mkdir()
    assert_error(inproc("storage", "move", str(elsewhere), code=None), exitcodes.NOT_FOUND,
                 f"storage move to 'file://{elsewhere}' refused")
    shutil.rmtree(elsewhere)
    shutil.copytree(blobs, elsewhere)
    moved = inproc("storage", "move", str(elsewhere), "--json").json()
    assert moved["payload"] == {"url": f"file://{elsewhere}", "previous": f"file://{blobs}"}
    assert inproc("storage", "show", "--json").json()["url"] == f"file://{elsewhere}"
    assert inproc("show", "walk:1", "--storage", str(elsewhere) + "/").code == 0
