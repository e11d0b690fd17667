"""Expected errors: one clear line on stderr, no traceback, a distinct exit code per class."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from clihelpers import RLREG, Runner, assert_error, small_module

from rlreg import exitcodes


def test_usage_errors_exit_2_without_importing_the_registry(rlreg):
    result = rlreg("versions", code=None)
    assert result.code == exitcodes.USAGE and "Missing argument 'NAME'" in result.err
    assert rlreg("frobnicate", code=None).code == exitcodes.USAGE


def test_bad_reference_exits_4(rlreg):
    assert_error(rlreg("show", "cartpole:abc", code=None), exitcodes.INVALID,
                 "reference 'cartpole:abc': expected NAME:VERSION with VERSION a positive integer")


def test_python_dash_m_is_the_same_entry_point(rlreg):
    proc = subprocess.run([sys.executable, "-m", "rlreg", "--version"], capture_output=True, text=True,
                          env=rlreg.env, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("rlreg, version ")


def test_unknown_model_exits_3(rlreg):
    assert_error(rlreg("show", "nope@best", code=None), exitcodes.NOT_FOUND, "no model named 'nope'")


def test_bad_name_exits_4(rlreg):
    assert_error(rlreg("versions", "bad name", code=None), exitcodes.INVALID,
                 "model name 'bad name' contains whitespace")


def test_unreachable_database_exits_6_naming_it_without_the_password(rlreg):
    url = "postgresql://someone:s3cret@127.0.0.1:1/rlreg"
    result = rlreg("models", "--db", url, code=None)
    assert_error(result, exitcodes.DATABASE, "postgresql://someone:***@127.0.0.1:1/rlreg",
                 "Connection refused")
    assert "s3cret" not in result.err


@pytest.mark.s3
def test_missing_bucket_exits_7(tmp_path, s3_server, home_registry):
    home_registry.snapshot("local", small_module(3))
    checkpoint = home_registry.export("local", 1, str(tmp_path / "ckpt"))
    home = tmp_path / "s3home"
    home.mkdir()
    runner = Runner(home, {"RLREG_CACHE_DIR": str(tmp_path / "cache")})  # AWS_* from the s3 fixture
    result = runner("import", "copy", checkpoint, "--storage", "s3://rlreg-no-such-bucket/models", code=None)
    assert_error(result, exitcodes.STORAGE, "rlreg-no-such-bucket")


def test_unknown_storage_protocol_exits_7(inproc):
    assert_error(inproc("verify", "--storage", "nosuchproto://x", code=None), exitcodes.STORAGE,
                 "unknown storage protocol 'nosuchproto'")


def test_damaged_object_verify_and_load_exit_8(rlreg, inproc, home_registry):
    home_registry.snapshot("damaged", small_module(1))
    assert rlreg("verify", "--json").json()["ok"] is True
    [obj] = [p for p in (rlreg.home / "blobs" / "objects").rglob("*") if p.is_file()]
    data = bytearray(obj.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor
    obj.write_bytes(bytes(data))

    result = rlreg("verify", "--json", code=None)
    assert result.code == exitcodes.INTEGRITY
    report = result.json()
    assert report["ok"] is False and list(report["damaged"]) == [f"blake3:{obj.name}"]
    assert f"1 damaged object(s), 0 version(s) with missing objects: blake3:{obj.name}" in result.err
    text = inproc("verify", code=None)
    assert text.code == exitcodes.INTEGRITY and "1 damaged, 0 versions with missing objects" in text.out
    assert_error(inproc("export", "damaged", str(rlreg.home / "out"), code=None), exitcodes.INTEGRITY,
                 f"object blake3:{obj.name}", "is damaged", "run `rlreg verify --repair` to move it aside")
    assert "  breaks damaged/1: " in text.out and "pi.net.mlp.0.weight" in text.out

    repaired = inproc("verify", "--repair", "--json", code=exitcodes.INTEGRITY).json()
    assert repaired["quarantined"] == [f"blake3:{obj.name}"] and not obj.exists()
    home_registry.snapshot("damaged", small_module(1))  # the same tensors: written again
    assert inproc("verify", "--json").json()["ok"] is True
    assert inproc("export", "damaged:1", str(rlreg.home / "out")).code == 0  # version 1 loads again


def test_db_current_of_a_mistyped_sqlite_path_makes_no_file(inproc, tmp_path):
    typo = tmp_path / "typo.db"
    status = inproc("db", "current", "--db", f"sqlite:///{typo}", "--json").json()
    assert status["current"] is None and status["up_to_date"] is False
    assert not typo.exists()  # (a connection made a 4 KiB file there)


def test_old_schema_exits_9_until_db_upgrade(rlreg, inproc, home_registry):
    from registry.db import create_engine, downgrade

    home_registry.close()
    engine = create_engine(f"sqlite:///{rlreg.home / 'rlreg.db'}")
    downgrade(engine, "0001_event_log")
    engine.dispose()

    assert_error(rlreg("models", code=None), exitcodes.SCHEMA, "run `rlreg db upgrade`", "0001_event_log")
    status = inproc("db", "current", "--json").json()
    assert status["current"] == "0001_event_log" and status["up_to_date"] is False
    assert "out of date: run `rlreg db upgrade`" in inproc("db", "current").out
    upgraded = rlreg("db", "upgrade", "--json").json()
    assert upgraded["up_to_date"] is True and upgraded["current"] == upgraded["head"]
    assert inproc("models").out.strip() == "no models yet (rlreg demo records one)"


def test_untrusted_class_in_a_checkpoint_exits_10(rlreg, home_registry, tmp_path):
    home_registry.snapshot("source", small_module(2))
    path = tmp_path / "ckpt"
    home_registry.export("source", 1, str(path))
    class_file = path / "class_and_ctor_args.json"
    doc = json.loads(class_file.read_text())
    doc["class"] = "not_a_trusted_pkg.policies.Policy"
    class_file.write_text(json.dumps(doc))
    result = rlreg("import", "imported", str(path), code=None)
    assert_error(result, exitcodes.UNTRUSTED, "'not_a_trusted_pkg.policies.Policy' is not trusted",
                 "RLREG_TRUSTED_MODULES")
    assert [m.name for m in home_registry.models()] == ["source"]


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda: __import__("registry").ConflictError("stream moved"), exitcodes.CONFLICT),
        (lambda: __import__("registry").DatabaseUnavailableError("down"), exitcodes.DATABASE),
        (lambda: __import__("registry").SchemaVersionError("old"), exitcodes.SCHEMA),
        (lambda: __import__("registry").IntegrityError("bad bytes"), exitcodes.INTEGRITY),
        (lambda: __import__("registry").NotFoundError("no model"), exitcodes.NOT_FOUND),
        (lambda: __import__("registry").InvalidNameError("bad"), exitcodes.INVALID),
        (lambda: __import__("storage").errors.StorageUnavailableError("no bucket"), exitcodes.STORAGE),
        (lambda: __import__("storage").errors.IntegrityError("flipped"), exitcodes.INTEGRITY),
        (lambda: __import__("rlmodule").errors.UntrustedClassError("evil"), exitcodes.UNTRUSTED),
        (lambda: __import__("rlmodule").errors.CheckpointNotFoundError("gone"), exitcodes.NOT_FOUND),
    ],
)
def test_every_error_class_has_its_code(make, code):
    assert exitcodes.classify(make()) == code


def test_the_table_is_keyed_by_class_not_by_name():
    import sqlite3

    from registry import errorcodes, errors

    # A driver's IntegrityError shares a name with ours but not a class: it is a bug if it escapes.
    assert exitcodes.classify(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    assert exitcodes.classify(type("NotFoundError", (Exception,), {})("same name")) is None
    for cls, outcome in errorcodes.TABLE:  # every row reachable: no earlier row shadows it
        assert errorcodes.outcome_of(cls("x")) is outcome, cls
    assert errorcodes.outcome_of(errors.InvalidReferenceError("m:²")).http_status == 400
    assert errorcodes.outcome_of(errors.NotFoundError("x")).http_status == 404
    from rlreg.errors import DamageFoundError, InvalidMetadataError

    assert exitcodes.classify(DamageFoundError("1 damaged")) == exitcodes.INTEGRITY
    assert exitcodes.classify(InvalidMetadataError("not JSON")) == exitcodes.INVALID


def test_a_bug_is_not_disguised_as_an_expected_error():
    from registry import NotFoundError

    assert exitcodes.classify(RuntimeError("bug")) is None
    assert exitcodes.classify(KeyError("bug")) is None
    assert exitcodes.classify(ValueError("bug")) is None
    try:  # a bug while handling an expected error is still a bug
        try:
            raise NotFoundError("no model")
        except NotFoundError:
            raise RuntimeError("bug in the handler")  # noqa: B904 - the implicit context is the point
    except RuntimeError as exc:
        assert exitcodes.classify(exc) is None
    wrapped = __import__("registry").DatabaseUnavailableError("down")
    wrapped.__cause__ = OSError("connection refused")
    assert exitcodes.classify(wrapped) == exitcodes.DATABASE


def test_the_console_script_is_installed():
    assert RLREG and RLREG.endswith("rlreg")


def test_an_rllib_pickle_checkpoint_is_refused_with_exit_4(inproc, tmp_path):
    folder = tmp_path / "rllib"
    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps({
        "class_and_ctor_args_file": "class_and_ctor_args.pkl", "state_file": "module_state.pt",
        "ray_version": "2.35.0", "checkpoint_version": "2.0",
    }))
    (folder / "class_and_ctor_args.pkl").write_bytes(b"\x80\x05not for us")
    assert_error(inproc("import", "from-rllib", str(folder), code=None), exitcodes.INVALID,
                 "it is an RLlib 2.35.0 checkpoint (pickle files), which RLModule.from_checkpoint "
                 "does not read; import it with `rlreg import NAME PATH --from-rllib`")
    as_json = inproc("import", "from-rllib", str(folder), "--json", code=exitcodes.INVALID)
    error = json.loads(as_json.err)
    assert error["exit_code"] == exitcodes.INVALID and "--from-rllib" in error["message"]


def test_a_users_own_class_loads_once_its_package_is_trusted(rlreg, tmp_path, monkeypatch, request):
    import importlib
    import textwrap

    import gymnasium as gym

    from registry import Registry
    from rlmodule import RLModuleSpec
    from rlmodule.ppo import PPOCatalog

    package = tmp_path / "site" / "rlreg_user_models"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "policies.py").write_text(textwrap.dedent('''
        from rlmodule.ppo import PPOTorchRLModule

        class MyPolicy(PPOTorchRLModule):
            """A user's own module class."""
    '''))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in ("rlreg_user_models", "rlreg_user_models.policies"):  # forgotten after the test
        request.addfinalizer(lambda name=name: sys.modules.pop(name, None))
    policies = importlib.import_module("rlreg_user_models.policies")
    env = gym.make("CartPole-v1")
    module = RLModuleSpec(module_class=policies.MyPolicy, observation_space=env.observation_space,
                          action_space=env.action_space, model_config_dict={"hidden": [8]},
                          catalog_class=PPOCatalog).build()
    with Registry(f"sqlite:///{rlreg.home / 'rlreg.db'}", str(rlreg.home / "blobs")) as reg:
        reg.snapshot("mine", module)

    rlreg.env["PYTHONPATH"] = str(tmp_path / "site")
    refused = rlreg("export", "mine", str(tmp_path / "out"), code=None)
    assert_error(refused, exitcodes.UNTRUSTED, "'rlreg_user_models.policies.MyPolicy' is not trusted",
                 "RLREG_TRUSTED_MODULES=rlreg_user_models")
    rlreg.env["RLREG_TRUSTED_MODULES"] = "rlreg_user_models"
    assert rlreg("export", "mine", str(tmp_path / "out"), "--json").json()["version"] == 1


def test_a_mistyped_database_url_is_not_turned_into_a_new_registry(inproc, tmp_path):
    typo = f"sqlite:///{tmp_path / 'rlrge.db'}"
    assert_error(inproc("models", "--db", typo, code=None), exitcodes.NOT_FOUND,
                 f"no registry database at '{typo}'", "rlreg db upgrade")
    assert not (tmp_path / "rlrge.db").exists()
    assert_error(inproc("models", "--db", f"sqlite:///{tmp_path / 'no-such-folder' / 'r.db'}", code=None),
                 exitcodes.DATABASE, "does not exist")


@pytest.mark.parametrize("args", [
    ("tag", "m:1", "stage=eval"), ("untag", "m:1", "stage"), ("describe", "m", "text"),
    ("alias", "set", "m", "best", "1"), ("alias", "rm", "m", "best"), ("rm", "m:1", "--reason", "x"),
    ("restore", "m:1"), ("retention", "set", "m", "--keep-last", "2"), ("retention", "clear", "m"),
])
def test_a_write_to_a_mistyped_database_url_makes_no_registry(inproc, tmp_path, args):
    """Each fails anyway (no model there): it must not leave a new, empty registry bound to the storage,
    which a gc would then take every object of (another registry's) for garbage."""
    typo = f"sqlite:///{tmp_path / 'rlrge.db'}"
    assert_error(inproc(*args, "--db", typo, code=None), exitcodes.NOT_FOUND, f"no registry database at '{typo}'")
    assert not (tmp_path / "rlrge.db").exists()


@pytest.mark.parametrize("args", [("demo", "--seed", "-1"), ("demo", "--seed", str(2**64))])
def test_a_seed_out_of_range_is_a_usage_error_not_a_traceback(inproc, args):
    done = inproc(*args, code=None)
    assert done.code == exitcodes.USAGE and "is not in the range" in done.err and "Traceback" not in done.err


def test_a_versions_limit_past_a_database_integer_is_invalid_input_as_events_says(inproc):
    for args in (("versions", "m", "--limit", str(2**70)), ("events", "--limit", str(2**70))):
        done = inproc(*args, code=None)
        assert done.code == exitcodes.INVALID and "Traceback" not in done.err, done.err


def test_the_systems_refusals_are_one_line_not_tracebacks(rlreg, inproc, home_registry, tmp_path):
    """Text from bytes that are not UTF-8, a file where a folder should be, a full output, an empty
    PATH or URL: one line and an exit code each, and nothing recorded."""
    home_registry.snapshot("m", small_module())
    before = [e.position for e in home_registry.events()]
    for args in (("describe", "m", "\udcff"), ("tag", "m:1", "k=\udcff"), ("versions", "m", "--where", 'tags.a = "\udcff"')):
        done = inproc(*args, code=None)
        assert done.code == exitcodes.INVALID and "Traceback" not in done.err, done.err
    assert [e.position for e in home_registry.events()] == before
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_error(inproc("cache", "ls", "--cache-dir", str(blocker), code=None), exitcodes.STORAGE, "Not a directory")
    with open("/dev/full", "w") as full:
        done = subprocess.run([RLREG, "models"], env=rlreg.env, stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=60)
    assert done.returncode == exitcodes.STORAGE and done.stderr == "rlreg: system error: No space left on device\n"
    for args in (("export", "m", ""), ("import", "n", " "), ("storage", "move", "")):
        done = inproc(*args, code=None)
        assert done.code == exitcodes.USAGE and "is empty" in done.err, done.err
    assert not (rlreg.home / "metadata.json").exists()


def test_an_error_about_a_url_given_names_that_url_and_its_class_once(inproc, home_registry):
    home_registry.snapshot("m", small_module())
    done = inproc("storage", "move", "bogus://x", code=None)
    assert done.code == exitcodes.STORAGE and "default storage" not in done.err, done.err
    assert done.err.startswith("rlreg: storage error: unknown storage protocol 'bogus' in 'bogus://x'"), done.err
    done = inproc("export", "m", "/proc/rlreg-no-such-thing", code=None)
    assert done.code == exitcodes.NOT_FOUND and "not found: not found" not in done.err, done.err


def test_an_error_naming_a_huge_argument_stays_short(inproc, home_registry):
    home_registry.snapshot("m", small_module())
    done = inproc("tag", "m:1", "k=" + "x" * 100_000, code=None)
    assert done.code == exitcodes.INVALID and len(done.err) < 2200, len(done.err)  # (the tag check shows 80)
    described = inproc("describe", "m:1", "x" * 100_000, code=None)  # a message that quotes it whole is cut
    assert described.code == exitcodes.INVALID and len(described.err) < 2200, len(described.err)


def test_a_cut_message_never_shows_a_password():
    message = "x" * 1975 + " postgresql://rl:hunter2secret@db.internal/rlreg and more"
    shown = exitcodes.one_line(RuntimeError(message))
    assert "hunter2" not in shown and "characters cut)" in shown, shown


def test_a_system_error_under_json_is_json(rlreg, home_registry):
    with open("/dev/full", "w") as full:
        done = subprocess.run([RLREG, "models", "--json"], env=rlreg.env, stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=60)
    assert done.returncode == exitcodes.STORAGE
    assert json.loads(done.stderr) == {"error": "system error", "exit_code": 7, "message": "No space left on device"}


def test_a_cut_message_keeps_its_end_and_masks_a_url_across_the_cut():
    for at in range(1380, 1420, 7):
        line = "x" * at + " postgresql://rl:hunter2secret@db.internal/rlreg " + "y" * 5000 + " run this"
        shown = exitcodes.one_line(RuntimeError(line))
        assert "hunter" not in shown and shown.endswith("y run this") and len(shown) < 2100, shown


def test_a_cache_commands_system_error_under_json_is_json(rlreg):
    with open("/dev/full", "w") as full:
        done = subprocess.run([RLREG, "cache", "ls", "--json"], env=rlreg.env, stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    assert done.returncode == exitcodes.STORAGE and json.loads(done.stderr)["error"] == "system error"
