"""``rlreg cache ls | verify | prune`` on the cache a real S3 store filled."""

from __future__ import annotations

import os
import time

import pytest
from clihelpers import assert_error, small_module

from rlreg import exitcodes

pytestmark = pytest.mark.s3


@pytest.fixture
def cached(tmp_path, s3_bucket, inproc):
    """A cache folder holding the objects of two snapshots to S3; ``inproc`` pointed at it."""
    from registry import Registry

    cache = tmp_path / "cache"
    with Registry(f"sqlite:///{tmp_path / 'rlreg.db'}", f"{s3_bucket}/models", cache_dir=str(cache)) as reg:
        reg.snapshot("walk", small_module(1))
        reg.snapshot("walk", small_module(2, hidden=16))
        reg.load("walk", 1), reg.load("walk", 2)  # reads fill the cache (uploads do not)
    inproc.env["RLREG_CACHE_DIR"] = str(cache)
    return cache


def files(cache):
    return sorted(p for p in (cache / "objects").rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))


def test_ls_lists_every_cached_object_with_sizes_in_binary_units(inproc, cached):
    listed = inproc("cache", "ls", "--json").json()
    on_disk = files(cached)
    assert len(on_disk) >= 2
    assert {o["digest"].removeprefix("blake3:") for o in listed["objects"]} == {p.name for p in on_disk}
    assert listed["total_bytes"] == sum(p.stat().st_size for p in on_disk)
    text = inproc("cache", "ls").out
    assert f"{len(on_disk)} object(s)" in text and "KiB" in text and str(cached) in text


def test_verify_removes_a_damaged_entry_and_exits_8(inproc, cached):
    assert inproc("cache", "verify", "--json").json()["ok"] is True
    victim = files(cached)[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = inproc("cache", "verify", "--json", code=None)
    assert result.code == exitcodes.INTEGRITY
    assert list(result.json()["damaged"]) == [f"blake3:{victim.name}"] and not victim.exists()
    assert inproc("cache", "verify", "--json").json()["ok"] is True  # the rest is fine


def test_prune_by_age_and_size(inproc, cached):
    old, *rest = files(cached)
    month_ago = time.time() - 40 * 86400
    os.utime(old, (month_ago, month_ago))
    dry = inproc("cache", "prune", "--older-than", "30d", "--dry-run", "--json").json()
    assert [o["digest"] for o in dry["removed"]] == [f"blake3:{old.name}"] and old.exists()
    inproc("cache", "prune", "--older-than", "30d")
    assert not old.exists() and all(p.exists() for p in rest)
    smallest = min(p.stat().st_size for p in rest)
    inproc("cache", "prune", "--max-size", f"{smallest - 1}B")
    assert files(cached) == []


def test_human_sizes_in_the_environment(inproc, cached):
    inproc.env["RLREG_CACHE_MAX_BYTES"] = "20GB"
    assert inproc("cache", "ls", "--json").json()["max_bytes"] == 20 * 10**9
    inproc.env["RLREG_CACHE_MAX_BYTES"] = "lots"
    assert_error(inproc("cache", "ls", code=None), exitcodes.INVALID, "RLREG_CACHE_MAX_BYTES='lots'", "GiB")
    del inproc.env["RLREG_CACHE_MAX_BYTES"]
    assert_error(inproc("cache", "prune", "--max-size", "ten", code=None), exitcodes.INVALID, "--max-size 'ten'")
    assert_error(inproc("cache", "prune", "--older-than", "24H", code=None), exitcodes.INVALID, "--older-than '24H'")  # (as gc --grace)
    assert inproc("cache", "prune", "--older-than", "1w", "--dry-run", code=None).code == 0
