"""``RLREG_OFFLINE=1 rlreg export|show``: the read path of the command line with the database's port
closed (a TCP proxy of ours, cut) and the bucket deleted; one line per warning or error, exit 11."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest
import torch
from clihelpers import Result, Runner, assert_error, small_module
from sqlalchemy.engine import make_url
from tcpproxy import TcpProxy

from registry import Registry

OFFLINE = 11


def _bytes(module) -> dict:
    import rlmodule

    tensors, _ = rlmodule.split_state(module.get_state())
    return {k: t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for k, t in tensors.items()}


@pytest.fixture
def cut_off(pg_url, s3_bucket, tmp_path, monkeypatch):
    """walk 1..2 (prod -> 1) recorded and walk@prod loaded through a proxy to PostgreSQL and moto's S3;
    then the proxy is cut (the URL's port is closed) and the bucket deleted. Returns (env, bytes of 1)."""
    url = make_url(pg_url)
    proxy = TcpProxy((url.host, url.port or 5432)).start()
    db = url.set(port=proxy.port).render_as_string(hide_password=False)
    cache = tmp_path / "cache"
    with Registry(db, f"{s3_bucket}/m", cache_dir=str(cache)) as reg:
        reg.snapshot("walk", small_module(seed=1))
        reg.snapshot("walk", small_module(seed=2))
        reg.set_alias("walk", "prod", 1)
        loaded = _bytes(reg.load("walk", alias="prod"))
    proxy.cut()
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket = s3_bucket.removeprefix("s3://")
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)
    env = {"RLREG_DB_URL": db, "RLREG_CACHE_DIR": str(cache), "RLREG_HOME": str(tmp_path / "home"),
           "RLREG_OFFLINE": "1", "RLREG_STORAGE_URL": None}
    return env, loaded


def _run(env: dict, *args: str) -> Result:
    from click.testing import CliRunner

    from rlreg.cli import cli

    got = CliRunner().invoke(cli, list(args), env=env, prog_name="rlreg")
    if got.exception is not None and not isinstance(got.exception, SystemExit):
        raise got.exception
    return Result(tuple(args), got.exit_code, got.stdout, got.stderr)


def test_export_and_show_offline(cut_off, tmp_path):
    from rlmodule import RLModule

    env, loaded = cut_off
    got = _run(env, "export", "walk@prod", str(tmp_path / "out"))
    assert got.code == 0, got.err
    [line] = got.err.splitlines()  # one warning line, no traceback
    assert line.startswith("rlreg: warning: RLREG_OFFLINE=1: model 'walk'@prod resolved to version 1"), line
    assert "last seen online, at" in line and "UTC" in line
    assert got.out.strip().startswith("exported walk:1 to")
    assert _bytes(RLModule.from_checkpoint(str(tmp_path / "out"))) == loaded

    shown = _run(env, "show", "walk:1")
    assert shown.code == 0 and shown.err == "", shown.err
    assert "prod" in shown.out
    as_json = _run(env, "show", "walk:1", "--json")
    assert json.loads(as_json.out)["version"]["version"] == 1

    missing = _run(env, "export", "walk:2", str(tmp_path / "out2"))
    assert_error(missing, OFFLINE, "version 2 is not in the offline cache", "load it once online")
    assert not (tmp_path / "out2").exists()
    assert_error(_run(env, "export", "walk@best", str(tmp_path / "o3")), OFFLINE, "alias 'best' was never seen")
    assert_error(_run(env, "alias", "set", "walk", "prod", "1"), OFFLINE, "RLREG_OFFLINE=1 does not contact")
    assert_error(_run(env, "models"), OFFLINE, "needs the database")
    # db upgrade made (or migrated) a database, db current tried the network (exit 6)
    fresh = tmp_path / "fresh.db"
    assert_error(_run({**env, "RLREG_DB_URL": f"sqlite:///{fresh}"}, "db", "upgrade"), OFFLINE, "db upgrade needs")
    assert not fresh.exists()
    assert_error(_run(env, "db", "current"), OFFLINE, "db current needs the database")

    online = _run({**env, "RLREG_OFFLINE": "0"}, "models")  # control: the database really is unreachable
    assert_error(online, 6)


def test_tampered_record_exits_8(cut_off, tmp_path):
    env, _ = cut_off
    records = [p for p in (Path(env["RLREG_CACHE_DIR"]) / "offline" / "records").rglob("*") if p.is_file()]
    for path in records:
        path.write_bytes(path.read_bytes().replace(b'"version":1', b'"version":2'))
    got = _run(env, "export", "walk:1", str(tmp_path / "out"))
    assert_error(got, 8, "damaged cache record")


def test_the_console_script_offline(cut_off, tmp_path):
    """The real entry point: the warning line on stderr, the checkpoint written, exit 0."""
    env, _ = cut_off
    runner = Runner(tmp_path, {k: v for k, v in env.items() if v is not None})
    got = runner("export", "walk@prod", str(tmp_path / "ckpt"))
    assert "Traceback" not in got.err and got.err.count("rlreg: warning:") == 1, got.err
    assert (tmp_path / "ckpt").is_dir()


def test_cache_verify_checks_the_offline_records(cut_off, tmp_path):
    env, _ = cut_off
    cache = env["RLREG_CACHE_DIR"]
    ok = _run(env, "cache", "verify", "--json")
    assert ok.code == 0 and ok.json()["ok"] and ok.json()["records_checked"] >= 3, ok.out
    assert _run(env, "cache", "ls", "--json").json()["offline_records"] == ok.json()["records_checked"]
    victim = next(p for p in sorted((Path(cache) / "offline" / "records").rglob("*"))
                  if p.is_file() and b'"walk"' in p.read_bytes())
    victim.write_bytes(victim.read_bytes().replace(b'"walk"', b'"wald"'))
    bad = _run(env, "cache", "verify", "--json")
    assert bad.code == 8 and list(bad.json()["damaged_records"]) == [str(victim)] and not victim.exists()
    assert _run(env, "cache", "verify").out.strip().endswith(": ok")
