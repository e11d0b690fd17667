"""The command line on the team setup: PostgreSQL for the log, an S3 bucket (moto) for the blobs."""

from __future__ import annotations

import pytest
import torch
from clihelpers import InProcess, Runner, small_module

pytestmark = [pytest.mark.postgres, pytest.mark.s3]


def test_commands_on_postgresql_and_s3(tmp_path, pg_url, pg_database, s3_bucket):
    from registry import Registry
    from rlmodule import RLModule

    storage = f"{s3_bucket}/team"
    with Registry(pg_url, storage, cache_dir=str(tmp_path / "writer-cache")) as reg:
        module = small_module(13)
        reg.snapshot("team/cartpole", module, metadata={"run": "nightly"})
        reg.set_alias("team/cartpole", "prod", 1)

    home = tmp_path / "home"
    home.mkdir()
    env = {"RLREG_DB_URL": pg_url, "RLREG_STORAGE_URL": storage, "RLREG_CACHE_DIR": str(tmp_path / "cache")}
    rlreg = Runner(home, env)  # the AWS_* variables of the moto server come from os.environ
    out = rlreg("export", "team/cartpole@prod", str(tmp_path / "ckpt"), "--json").json()
    assert out["version"] == 1
    restored = RLModule.from_checkpoint(str(tmp_path / "ckpt"))
    pairs = zip(restored.state_dict().values(), module.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)

    inproc = InProcess(rlreg)
    inproc.env.update(env)
    [info] = inproc("models", "--json").json()
    assert (info["name"], info["aliases"]) == ("team/cartpole", {"prod": 1})
    report = inproc("verify", "--json").json()
    assert report["ok"] is True and report["checked"] >= 1
    assert inproc("db", "current", "--json").json()["up_to_date"] is True
    assert f"database: {pg_url}\n" in inproc("db", "current").out

    empty = pg_database()  # a database nobody has started a registry in: read commands refuse it
    refused = inproc("versions", "team/cartpole", "--db", empty, code=3)
    assert "no registry" in refused.err and empty.rsplit("/", 1)[1] in refused.err
