"""``rlreg verify`` on a bucket that does not exist: exit 7 and one line naming it, never "ok"."""

from __future__ import annotations

import pytest
from clihelpers import Runner, assert_error

from rlreg import exitcodes

pytestmark = pytest.mark.s3


@pytest.mark.parametrize("extra", [(), ("--json",)])
def test_verify_on_a_missing_bucket_exits_7(tmp_path, s3_server, extra):
    home = tmp_path / "home"
    home.mkdir()
    runner = Runner(home, {"RLREG_CACHE_DIR": str(tmp_path / "cache")})  # AWS_* from the s3 fixture
    result = runner("verify", "--storage", "s3://rlreg-never-created-bucket/models", *extra, code=None)
    assert_error(result, exitcodes.STORAGE, "rlreg-never-created-bucket")
    assert result.out == ""


def test_verify_on_an_empty_bucket_is_ok(tmp_path, s3_bucket):
    home = tmp_path / "home"
    home.mkdir()
    runner = Runner(home, {"RLREG_CACHE_DIR": str(tmp_path / "cache")})
    assert runner("verify", "--storage", f"{s3_bucket}/models", "--json").json()["ok"] is True
