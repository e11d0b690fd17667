"""Commands that record events or rebuild state: alias, import, projections rebuild, db upgrade."""

from __future__ import annotations

import json

from clihelpers import assert_error, small_module

from rlreg import exitcodes


def test_alias_set_and_rm_are_events(rlreg, inproc, home_registry):
    home_registry.snapshot("aliased", small_module(7))
    home_registry.snapshot("aliased", small_module(8))
    event = rlreg("alias", "set", "aliased", "prod", "1", "--json").json()
    assert (event["type"], event["payload"]) == ("AliasSet", {"alias": "prod", "version": 1})
    assert home_registry.version("aliased", alias="prod").version == 1
    assert inproc("alias", "set", "aliased", "prod", "2").out.strip() == (
        f"aliased@prod -> version 2 (event {event['position'] + 1})"
    )
    assert home_registry.version("aliased", alias="prod").version == 2
    removed = rlreg("alias", "rm", "aliased", "prod", "--json").json()
    assert (removed["type"], removed["payload"]) == ("AliasRemoved", {"alias": "prod"})
    assert home_registry.models()[0].aliases == {}

    before = len(home_registry.events())
    assert_error(inproc("alias", "set", "aliased", "prod", "9", code=None), exitcodes.NOT_FOUND,
                 "model 'aliased' has no version 9")
    assert_error(inproc("alias", "set", "aliased", "no/slash", "1", code=None), exitcodes.INVALID,
                 "alias 'no/slash' is not allowed")
    assert_error(inproc("alias", "rm", "aliased", "prod", code=None), exitcodes.NOT_FOUND, "no alias 'prod'")
    assert len(home_registry.events()) == before  # refused input appended nothing


def test_import_records_a_checkpoint_with_metadata(rlreg, inproc, home_registry, tmp_path):
    module = small_module(9)
    path = module.save_to_path(str(tmp_path / "from-training"))
    imported = rlreg("import", "team/imported", path, "--metadata", '{"source": "rllib", "step": 5}',
                     "--json").json()
    assert (imported["name"], imported["version"]) == ("team/imported", 1)
    assert imported["metadata"] == {"source": "rllib", "step": 5}
    again = inproc("import", "team/imported", path)
    assert again.out.strip() == f"imported {path} as team/imported:2"
    loaded = home_registry.load("team/imported", 2)
    assert all((a == b).all() for a, b in zip(loaded.state_dict().values(), module.state_dict().values()))

    before = len(home_registry.events())
    assert_error(inproc("import", "team/imported", path, "--metadata", "[1, 2]", code=None),
                 exitcodes.INVALID, "--metadata '[1, 2]': expected a JSON object")
    assert_error(inproc("import", "team/imported", path, "--metadata", "{bad", code=None),
                 exitcodes.INVALID, "--metadata '{bad' is not JSON")
    assert_error(inproc("import", "team/imported", str(tmp_path / "nothing-here"), code=None),
                 exitcodes.NOT_FOUND, "nothing-here")
    assert len(home_registry.events()) == before


def test_projections_rebuild_replays_every_event(rlreg, inproc, home_registry):
    home_registry.snapshot("rebuilt", small_module(10))
    home_registry.snapshot("rebuilt", small_module(11))
    home_registry.set_alias("rebuilt", "best", 1)
    live = home_registry.projection_rows()
    out = rlreg("projections", "rebuild", "--json").json()
    assert out == {"events": len(home_registry.events())} == {"events": 5}  # StorageBound, spec, 2 versions, alias
    assert home_registry.projection_rows() == live
    assert inproc("projections", "rebuild").out.strip() == "rebuilt projections from 5 events"


def test_verify_ok_and_db_commands_on_a_fresh_registry(rlreg, inproc, home_registry):
    home_registry.snapshot("checked", small_module(12))
    report = inproc("verify", "--json").json()  # the console script's verify: test_errors.py
    assert report["ok"] is True and report["checked"] == 1 and report["damaged"] == {}
    assert inproc("verify").out.strip() == "checked 1 objects of 1 versions: ok"
    status = inproc("db", "current", "--json").json()
    assert status["up_to_date"] is True and status["current"] == status["head"]
    text = inproc("db", "current").out
    assert f"database: sqlite:///{rlreg.home / 'rlreg.db'}" in text and "status:   up to date" in text
    assert json.loads(inproc("db", "upgrade", "--json").out)["up_to_date"] is True


def test_verify_reports_a_missing_object_by_version(inproc, home_registry, rlreg):
    home_registry.snapshot("lost", small_module(14))
    [obj] = [p for p in (rlreg.home / "blobs" / "objects").rglob("*") if p.is_file()]
    obj.unlink()
    result = inproc("verify", "--json", code=exitcodes.INTEGRITY)
    report = result.json()
    assert report["ok"] is False and report["missing"] == {"lost/1": [f"blake3:{obj.name}"]}
    assert "0 damaged object(s), 1 version(s) with missing objects: lost/1" in result.err
    text = inproc("verify", code=exitcodes.INTEGRITY).out
    assert f"  missing lost/1: blake3:{obj.name}" in text
