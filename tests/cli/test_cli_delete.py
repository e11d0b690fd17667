"""``rlreg rm``, ``rlreg restore``, ``rlreg versions --all``: the real console script on an embedded registry."""

from __future__ import annotations

import json

from clihelpers import assert_error, small_module

from rlreg import exitcodes


def test_rm_restore_and_versions_all(rlreg, home_registry, inproc):
    module = small_module()
    for _ in range(3):
        home_registry.snapshot("pol", module)
    home_registry.set_alias("pol", "prod", 2)
    assert_error(rlreg("rm", "pol:2", "--reason", "bad run", code=5), 5, "pol@prod", "--force")
    out = inproc("rm", "pol:2", "--reason", "bad run", "--force").out
    assert "deleted pol:2" in out
    assert_error(inproc("show", "pol:2", code=3), 3, "version 2 was deleted", "bad run")
    listed = inproc("versions", "pol").out
    assert "bad run" not in listed and len(listed.splitlines()) == 3
    marked = inproc("versions", "pol", "--all").out.splitlines()
    assert len(marked) == 4 and "DELETED" in marked[0] and "deleted " in marked[2] and "bad run" in marked[2]
    assert inproc("versions", "pol", "--all", "--json").json()[1]["deleted"]["reason"] == "bad run"
    assert "restored pol:2" in inproc("restore", "pol:2").out
    assert_error(inproc("restore", "pol:2", code=5), 5, "is not deleted")
    assert_error(inproc("restore", "pol", code=4), 4, "NAME:VERSION")
    history = inproc("history", "pol").out
    assert "version 2 deleted: bad run" in history and "version 2 restored" in history
    inproc("rm", "pol:1", "--reason", "two\nlines \x1b[2J \x9b2J \u202eRTL")  # one row each: controls escaped
    marked = inproc("versions", "pol", "--all").out.splitlines()  # (C1's CSI and bidi overrides too)
    assert len(marked) == 4 and "two\\nlines \\x1b[2J \\x9b2J \\u202eRTL" in marked[1], marked
    home_registry.set_description("pol", "first line\nsecond line", version=3)
    shown = inproc("show", "pol:3").out.splitlines()  # a description's lines, each under the first
    assert "second line" in shown[shown.index(next(x for x in shown if x.startswith("description:"))) + 1]


def test_rm_model_needs_a_reason_and_hides_the_model(home_registry, inproc):
    home_registry.snapshot("junk", small_module())
    assert "--reason" in inproc("rm", "junk", code=2).err
    gone = inproc("rm", "junk", "--reason", "a test model", "--json").json()
    assert gone["type"] == "ModelDeleted" and gone["payload"]["versions"] == [1]
    assert "junk" not in inproc("models").out
    assert_error(inproc("versions", "junk", code=3), 3, "model 'junk' was deleted", "a test model")


def test_retention_set_show_clear(home_registry, inproc):
    module = small_module()
    for ret in (3, 1, 2, 0):
        home_registry.snapshot("pol", module, {"ret": ret})
    out = inproc("retention", "set", "pol", "--keep-last", "1", "--keep-best", "ret:1").out
    assert "keep_last=1, keep_best=ret:1:max" in out and "deleted 2 version(s)" in out
    assert [v.version for v in home_registry.versions("pol")] == [1, 4]
    assert inproc("retention", "show", "pol", "--json").json()["keep_best"] == {"key": "ret", "count": 1, "mode": "max"}
    assert_error(inproc("retention", "set", "pol", "--keep-best", "ret", code=4), 4, "METADATA_KEY:COUNT")
    for count in ("\u00b2", "\u0663"):  # str.isdigit() takes both: a traceback (int('²')), or 3
        assert_error(inproc("retention", "set", "pol", "--keep-best", f"ret:{count}", code=4), 4, "METADATA_KEY:COUNT")
    inproc("retention", "set", "pol", "--keep-best", "ret:1", "--min")
    assert [v.version for v in home_registry.versions("pol")] == [4]  # 0 is the lowest, and the newest
    typo = inproc("retention", "set", "pol", "--keep-best", "rte:1")
    assert typo.err.count("rlreg: warning: retention of pol: no version has a number under metadata key 'rte'") == 1
    assert "check the key" in typo.err and "deleted 0 version(s)" in typo.out
    as_json = inproc("retention", "set", "pol", "--keep-best", "rte:1", "--json")  # stderr: JSON lines, as errors
    warned = [json.loads(line)["warning"] for line in as_json.err.splitlines()]
    assert len(warned) == 1 and warned[0].startswith("retention of pol: no version has a number"), warned
    assert_error(inproc("retention", "set", "pol", "--keep-last", str(2**63), code=4), 4, "keep_last", "2^63 - 1")
    assert "cleared" in inproc("retention", "clear", "pol").out
    assert "has no retention policy" in inproc("retention", "show", "pol").out


def test_gc_reports_and_reclaims(home_registry, inproc):
    module = small_module()
    home_registry.snapshot("pol", module)
    home_registry.snapshot("pol", small_module(seed=1))
    inproc("rm", "pol:1", "--reason", "old")
    kept = inproc("gc").out
    assert "reclaimed:" in kept and "0 objects" in kept.split("reclaimed:")[1].splitlines()[0]
    dry = inproc("gc", "--grace", "0s", "--dry-run", "--json").json()
    assert dry["dry_run"] and dry["reclaimed_objects"] > 0
    done = inproc("gc", "--grace", "0", "--json").json()
    assert done["reclaimed_objects"] == dry["reclaimed_objects"] and done["reclaimed_bytes"] == dry["reclaimed_bytes"]
    assert inproc("gc", "--grace", "0", "--json").json()["reclaimed_objects"] == 0
    assert_error(inproc("gc", "--grace", "soon", code=4), 4, "--grace 'soon'", "24h")
    assert inproc("verify", "--json").json()["ok"]


def test_rm_model_asks_on_a_terminal(rlreg, home_registry):
    """On a terminal `rlreg rm NAME` asks first: "n" keeps the model; `--yes` does not ask."""
    import os
    import pty
    import subprocess

    home_registry.snapshot("junk", small_module())

    def on_a_terminal(name: str, answer: bytes) -> tuple[int, bytes]:
        main, child = pty.openpty()
        try:
            proc = subprocess.Popen([*_rlreg_cmd(rlreg), "rm", name, "--reason", "test"], stdin=child,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=rlreg.env, cwd=rlreg.home)
            os.write(main, answer)
            _, err = proc.communicate(timeout=120)
        finally:
            os.close(main)
            os.close(child)
        return proc.returncode, err

    code, err = on_a_terminal("junk", b"n\n")
    assert b"delete every version of model 'junk'?" in err
    assert code == exitcodes.INTERRUPTED and b"rlreg: not confirmed: nothing was deleted" in err, err  # (1: a bug)
    assert home_registry.exists("junk")
    code, err = on_a_terminal("jnuk", b"y\n")  # no such model: said at once, with no question first
    assert code == exitcodes.NOT_FOUND and b"delete every version" not in err and b"no model named" in err, err


def _rlreg_cmd(runner):
    from clihelpers import RLREG

    return [RLREG]


def test_gc_and_cache_prune_read_durations_alike(inproc, home_registry):
    """One grammar (storage.config.parse_duration): weeks and plain seconds in both, and the same error."""
    dry = inproc("gc", "--grace", "1w", "--dry-run")
    assert dry.code == 0 and "would be removed" in dry.out and " removed" not in dry.out.replace("would be removed", "")
    assert inproc("gc", "--grace", "90", "--dry-run").code == 0
    assert inproc("gc", "--grace", ".5h", "--dry-run").code == 0
    for args in (("gc", "--grace", "24H"), ("cache", "prune", "--older-than", "24H")):
        assert_error(inproc(*args, code=None), exitcodes.INVALID, "'24H' is not a duration", "24h")
