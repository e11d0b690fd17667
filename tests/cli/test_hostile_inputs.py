"""Hostile input, table-driven: each input ends as one clear line and its own exit code (2..10), never a
traceback, a hang or a success. The tables are the inventory of issue 15's hostile inputs.

Each table row: id -> (how to make the input, expected exit code, a fragment the error line names).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import shutil
import struct
import uuid
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from clihelpers import InProcess, Runner, assert_error, small_module

from rlreg.exitcodes import INTEGRITY, INVALID, NOT_FOUND

pytestmark = pytest.mark.timeout(120)  # a hang (a FIFO opened for reading) fails instead of blocking CI

BIG = str(2**63)  # one past the largest 64-bit version or position
HUGE = "1" + "0" * 30


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A registry (SQLite + local folder) holding model ``m`` version 1, and a good checkpoint of it."""
    from registry import Registry

    root = tmp_path_factory.mktemp("hostile")
    (root / "home").mkdir()
    with Registry(f"sqlite:///{root / 'home' / 'rlreg.db'}", str(root / "home" / "blobs")) as reg:
        reg.snapshot("m", small_module(1))
        reg.snapshot("m", small_module(2))
        reg.export("m", 1, str(root / "good"))
    return root


@pytest.fixture
def cli(home) -> InProcess:
    return InProcess(Runner(home / "home", {"RLREG_CACHE_DIR": str(home / "cache")}))


# --- checkpoints: rlreg import of a damaged or hostile checkpoint folder -------------------------


def _replace(path: str, make: Callable[[str], None]) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)
    make(path)


def _write(name: str, text: str) -> Callable[[str], None]:
    def mutate(ckpt: str) -> None:
        with open(os.path.join(ckpt, name), "w") as f:
            f.write(text)

    return mutate


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def _ctor(change: Callable[[dict], None]) -> Callable[[str], None]:
    """Edit the RLModuleConfig dict inside class_and_ctor_args.json."""

    def mutate(ckpt: str) -> None:
        path = os.path.join(ckpt, "class_and_ctor_args.json")
        with open(path) as f:
            ctor = json.load(f)
        change(ctor["ctor_args"][0]["value"])
        with open(path, "w") as f:
            json.dump(ctor, f)

    return mutate


@functools.cache
def _bomb(nbytes: int, declared: int | None = None) -> str:
    """RLlib's array encoding (base64 of zlib of np.save) of ``nbytes`` of zeros: a few hundred KB.

    Its np.save header declares ``declared`` float32 elements (default: all of them).

    Built in a blink: after the first MB the deflate window holds only zeros, so one byte-aligned
    block that encodes a MB of zeros encodes every further MB too; the zlib trailer's Adler-32 is
    computed in closed form over the whole inflated stream, so the bomb is a valid zlib stream.
    """
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (nbytes // 4 if declared is None else declared,)})
    mb = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: we frame it ourselves
    first = deflate.compress(head.getvalue() + mb) + deflate.flush(zlib.Z_SYNC_FLUSH)
    block = deflate.compress(mb) + deflate.flush(zlib.Z_SYNC_FLUSH)
    count = nbytes >> 20
    check = zlib.adler32(head.getvalue())  # then count MB of zeros: Adler-32's sum b grows by a per byte
    a, b = check & 0xFFFF, check >> 16
    check = ((b + a * (count << 20)) % 65521) << 16 | a
    stream = b"\x78\xda" + first + block * (count - 1) + deflate.flush() + struct.pack(">I", check)
    return base64.b64encode(stream).decode()


def _header(header: object) -> Callable[[str], None]:
    """Replace module_state.safetensors by a file with this header and no data."""

    def mutate(ckpt: str) -> None:
        text = (header if isinstance(header, str) else json.dumps(header)).encode()
        with open(os.path.join(ckpt, "module_state.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)

    return mutate


def _fifo(name: str) -> Callable[[str], None]:
    return lambda ckpt: _replace(os.path.join(ckpt, name), os.mkfifo)


def _folder(name: str) -> Callable[[str], None]:
    return lambda ckpt: _replace(os.path.join(ckpt, name), os.mkdir)


CHECKPOINTS = {
    "state file a FIFO": (_fifo("module_state.safetensors"), INVALID, "is a FIFO, not a regular file"),
    "state file a folder": (_folder("module_state.safetensors"), INVALID, "is a folder, not a regular file"),
    "metadata.json a FIFO": (_fifo("metadata.json"), INVALID, "is a FIFO"),
    "class_and_ctor_args.json a FIFO": (_fifo("class_and_ctor_args.json"), INVALID, "is a FIFO"),
    "module_state.json a FIFO": (_fifo("module_state.json"), INVALID, "is a FIFO"),
    "module_state.json a folder": (_folder("module_state.json"), INVALID, "is a folder"),
    "metadata.json nested 10,000 deep": (_write("metadata.json", _nested(10_000)), INVALID, "10000 levels deep"),
    "metadata.json nested 600 deep": (_write("metadata.json", _nested(600)), INVALID, "600 levels deep"),
    "module_state.json nested 10,000 deep": (
        _write("module_state.json", '{"a": ' + _nested(10_000) + "}"), INVALID, "10001 levels deep"),
    "module_state.json nested 600 deep": (
        _write("module_state.json", '{"a": ' + _nested(600) + "}"), INVALID, "601 levels deep"),
    "class_and_ctor_args.json nested 10,000 deep": (
        _write("class_and_ctor_args.json", _nested(10_000)), INVALID, "10000 levels deep"),
    "model config nested 600 deep": (
        _ctor(lambda c: c["model_config_dict"].update(x=json.loads(_nested(600)))), INVALID, "levels deep"),
    "safetensors header nested 20,000 deep": (_header(_nested(20_000)), INVALID, "20000 levels deep"),
    "safetensors __metadata__ a list": (_header({"__metadata__": [1, 2]}), INVALID, "__metadata__"),
    "safetensors __metadata__ of numbers": (_header({"__metadata__": {"a": 1}}), INVALID, "__metadata__"),
    "safetensors shape [0, 10^30]": (
        _header({"w": {"dtype": "F32", "shape": [0, 10**30], "data_offsets": [0, 0]}}), INVALID, "beyond"),
    "safetensors header longer than the file": (
        lambda ckpt: open(os.path.join(ckpt, "module_state.safetensors"), "wb").write(struct.pack("<Q", 10**12)),
        INVALID, "does not fit"),
    "Discrete n = 10^30": (_ctor(lambda c: c["action_space"].update(n=10**30)), INVALID, "discrete space 'n'"),
    "Discrete n = 0": (_ctor(lambda c: c["action_space"].update(n=0)), INVALID, "discrete space 'n'"),
    "Discrete start = 10^30": (_ctor(lambda c: c["action_space"].update(start=10**30)), INVALID, "'start'"),
    "Box shape [0, 10^30]": (
        _ctor(lambda c: c["observation_space"].update(shape=[0, 10**30])), INVALID, "box space 'shape'"),
    "Box shape [10^5, 10^5]": (
        _ctor(lambda c: c["observation_space"].update(shape=[10**5, 10**5])), INVALID, "box space 'shape'"),
    "Box shape negative": (_ctor(lambda c: c["observation_space"].update(shape=[-4])), INVALID, "'shape'"),
    "Box low a zlib bomb (256 MB declaring 4 floats)": (
        _ctor(lambda c: c["observation_space"].update(low=_bomb(256 << 20, 4))), INVALID,
        "box space 'low'"),
    "Box high a zlib bomb (256 MB declaring 4 floats)": (
        _ctor(lambda c: c["observation_space"].update(high=_bomb(256 << 20, 4))), INVALID,
        "inflates to more than the 144 bytes its declared shape needs"),
    "Box low a zlib bomb (256 MB declaring 64M floats)": (
        _ctor(lambda c: c["observation_space"].update(low=_bomb(256 << 20))), INVALID,
        "box space 'low' shape [67108864] is beyond reason"),
    "MultiDiscrete nvec a zlib bomb (256 MB)": (
        _ctor(lambda c: c.update(action_space={"space": "multi-discrete", "nvec": _bomb(256 << 20), "dtype": "<i8"})),
        INVALID, "array shape [67108864] is beyond reason"),
    "hidden [10^6, 10^6]": (
        _ctor(lambda c: c["model_config_dict"].update(hidden=[10**6, 10**6])), INVALID, "'hidden'"),
    "hidden [60000, 60000] (3.6e9 weights)": (
        _ctor(lambda c: c["model_config_dict"].update(hidden=[60_000, 60_000])), INVALID, "dense layer"),
    "Discrete n = 2^24 with hidden 2^16 (a 2^40-weight head)": (
        _ctor(lambda c: (c["action_space"].update(n=1 << 24), c["model_config_dict"].update(hidden=[1 << 16]))),
        INVALID, "dense layer"),
    "metadata.json not JSON": (_write("metadata.json", "{]"), INVALID, "not UTF-8 JSON"),
    "metadata.json not UTF-8": (_write("metadata.json", "\udcff"), INVALID, "metadata.json"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_hostile_checkpoint_import(cli, home, case):
    mutate, code, fragment = CHECKPOINTS[case]
    ckpt = str(home / f"bad-{uuid.uuid4().hex[:8]}")
    shutil.copytree(home / "good", ckpt)
    try:
        mutate(ckpt)
    except UnicodeEncodeError:  # the non-UTF-8 case: write the raw byte
        with open(os.path.join(ckpt, "metadata.json"), "wb") as f:
            f.write(b"\xff")
    before = cli("versions", "m", "--json").json()
    assert_error(cli("import", "m", ckpt, code=None), code, fragment)
    assert cli("versions", "m", "--json").json() == before  # nothing recorded


# --- names, versions, references, metadata, export targets ---------------------------------------

ARGS = {
    "name '.'": (["import", ".", "{good}"], INVALID, "'.' segment"),
    "name 'a/.'": (["import", "a/.", "{good}"], INVALID, "'.' segment"),
    "name 'a/./b'": (["import", "a/./b", "{good}"], INVALID, "'.' segment"),
    "name './a'": (["import", "./a", "{good}"], INVALID, "'.' segment"),
    "name '..'": (["import", "..", "{good}"], INVALID, "'..' segment"),
    "name 'a/../b'": (["import", "a/../b", "{good}"], INVALID, "'..' segment"),
    "show m:2^63": (["show", f"m:{BIG}"], INVALID, "out of range"),
    "show m:10^30": (["show", f"m:{HUGE}"], INVALID, "out of range"),
    "alias set m best 2^63": (["alias", "set", "m", "best", BIG], INVALID, "out of range"),
    "events --after 2^63": (["events", "--after", BIG], INVALID, "out of range"),
    "events --limit 2^63": (["events", "--limit", BIG], INVALID, "out of range"),
    "events --follow --after 2^63": (["events", "--follow", "--after", BIG], INVALID, "out of range"),
    "diff m 1 2^63": (["diff", "m", "1", BIG], INVALID, "out of range"),
    "diff m 10^30 1": (["diff", "m", HUGE, "1"], INVALID, "out of range"),
    "export m:2^63": (["export", f"m:{BIG}", "{tmp}/out"], INVALID, "out of range"),
    "import from rlreg://m/2^63": (["import", "n", f"rlreg://m/{BIG}"], NOT_FOUND, "out of range"),
    "import from rlreg://m/10^30": (["import", "n", f"rlreg://m/{HUGE}"], NOT_FOUND, "out of range"),
    "export to rlreg://m/1": (["export", "m:1", "rlreg://m/1"], INVALID, "read-only"),
    "export to /proc/self/mem": (["export", "m:1", "/proc/self/mem"], INVALID, "a file is in the way"),
    "export below /proc/self/mem": (["export", "m:1", "/proc/self/mem/x"], INVALID, "a file is in the way"),
    "export onto a file": (["export", "m:1", "{good}/metadata.json"], INVALID, "a file is in the way"),
    "--metadata nested 10,000 deep": (
        ["import", "m", "{good}", "--metadata", '{"a": ' + _nested(10_000) + "}"], INVALID, "levels deep"),
    "--metadata nested 600 deep": (
        ["import", "m", "{good}", "--metadata", '{"a": ' + _nested(600) + "}"], INVALID, "levels deep"),
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_flag(request, home):
    """``--db`` of the backend: none (the home SQLite file), or a PostgreSQL database holding the same model."""
    if request.param == "sqlite":
        yield []
        return
    from registry import Registry

    engine = request.getfixturevalue("pg_admin_engine")
    name = f"rlreg_hostile_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = engine.url.set(database=name).render_as_string(hide_password=False)
    with Registry(url, str(home / "home" / "blobs")) as reg:
        reg.snapshot("m", small_module(1))
        reg.snapshot("m", small_module(2))
    yield ["--db", url]
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("case", sorted(ARGS))
def test_hostile_arguments(cli, home, db_flag, tmp_path, case):
    args, code, fragment = ARGS[case]
    args = [*(a.replace("{good}", str(home / "good")).replace("{tmp}", str(tmp_path)) for a in args), *db_flag]
    writes = args[0] in ("import", "alias")
    before = cli("events", "--json", *db_flag).json() if writes else None
    assert_error(cli(*args, code=None), code, fragment)
    if writes:
        assert cli("events", "--json", *db_flag).json() == before  # nothing recorded


# --- damaged storage under the CLI: verify reports, load refuses, both in bounded time ----------


def _object_paths(home_dir) -> list[str]:
    root = home_dir / "blobs" / "objects"
    return sorted(str(p) for p in root.glob("*/*") if len(p.name) == 64)


STORAGE = {
    "an object replaced by a FIFO": lambda p: _replace(p, os.mkfifo),
    "an object replaced by a folder": lambda p: _replace(p, os.mkdir),
    "an object replaced by a folder holding a file": lambda p: _replace(
        p, lambda q: (os.mkdir(q), open(os.path.join(q, "x"), "w").close())),
    "an object truncated to 3 bytes": lambda p: open(p, "r+b").truncate(3),
}


@pytest.mark.parametrize("case", sorted(STORAGE))
def test_damaged_object_verify_export_and_repair(tmp_path, case):
    from registry import Registry

    home = tmp_path / "home"
    home.mkdir()
    cli = InProcess(Runner(home, {"RLREG_CACHE_DIR": str(tmp_path / "cache")}))
    with Registry(f"sqlite:///{home / 'rlreg.db'}", str(home / "blobs")) as reg:
        reg.snapshot("d", small_module(7))
    paths = _object_paths(home)
    STORAGE[case](paths[0])
    assert_error(cli("export", "d:1", str(tmp_path / "out"), code=None), INTEGRITY, "is damaged")
    verify = cli("verify", "--json", code=INTEGRITY).json()
    assert verify["checked"] == len(paths) and len(verify["damaged"]) == 1
    repaired = cli("verify", "--repair", "--json", code=INTEGRITY).json()
    assert len(repaired["quarantined"]) == 1
    with Registry(f"sqlite:///{home / 'rlreg.db'}", str(home / "blobs")) as reg:
        reg.snapshot("d", small_module(7))  # the next snapshot writes the object again
    assert cli("verify", "--json").json()["ok"]
    cli("export", "d:1", str(tmp_path / "out2"))

