"""Aliases (events too), diffs between versions, export to and import from checkpoint folders."""

from __future__ import annotations

import math

import pytest
import registry_toys as toys
import torch

from registry import NotFoundError
from registry.modeldiff import ModelDiff
from rlmodule import RLModule


@pytest.fixture
def three_versions(reg):
    module = toys.spec().build()
    for step in (1, 2, 3):
        toys.train_step(module, step)
        reg.snapshot("pol", module, {"step": step})
    return reg


def test_aliases_move_and_are_listed_on_versions(three_versions):
    reg = three_versions
    event = reg.set_alias("pol", "best", 2)
    assert (event.type, event.payload) == ("AliasSet", {"alias": "best", "version": 2})
    reg.set_alias("pol", "prod", 2)
    assert [v.aliases for v in reg.versions("pol")] == [(), ("best", "prod"), ()]
    assert toys.states_equal(reg.load("pol", alias="best"), reg.load("pol", 2))
    reg.set_alias("pol", "best", 3)  # moves
    assert [v.aliases for v in reg.versions("pol")] == [(), ("prod",), ("best",)]
    assert reg.version("pol", alias="best").version == 3
    assert reg.models()[0].aliases == reg.aliases("pol") == {"best": 3, "prod": 2}
    removed = reg.remove_alias("pol", "prod")
    assert (removed.type, removed.payload) == ("AliasRemoved", {"alias": "prod"})
    assert reg.version("pol", 2).aliases == ()
    with pytest.raises(NotFoundError, match="model 'pol' has no alias 'prod'"):
        reg.load("pol", alias="prod")
    assert [e.type for e in reg.history("pol")][-4:] == ["AliasSet", "AliasSet", "AliasSet", "AliasRemoved"]


def test_alias_errors_change_nothing(three_versions):
    reg = three_versions
    reg.set_alias("pol", "best", 1)
    head = reg.head()
    with pytest.raises(NotFoundError, match=r"model 'pol' has no version 9 \(latest is 3\)"):
        reg.set_alias("pol", "best", 9)
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        reg.set_alias("nope", "best", 1)
    with pytest.raises(NotFoundError, match="model 'pol' has no alias 'gone'"):
        reg.remove_alias("pol", "gone")
    with pytest.raises(ValueError, match="alias 'a/b' is not allowed"):
        reg.set_alias("pol", "a/b", 1)
    assert reg.head() == head
    assert reg.version("pol", alias="best").version == 1


def test_diff_reports_tensors_spec_and_metadata(make_registry, storage_url):
    reg = make_registry(storage_url)
    module = toys.spec().build()
    reg.snapshot("d", module, {"step": 1, "tag": "x"})
    with torch.no_grad():
        module.net[0].weight[0, 0] += 0.25
        module.steps += 2
    reg.snapshot("d", module, {"step": 2, "tag": "x"})
    diff = reg.diff("d", 1, 2)
    assert isinstance(diff, ModelDiff)
    assert diff.changed == {"net.0.weight": pytest.approx(0.25), "steps": 2.0}
    assert diff.added == [] and diff.removed == []
    assert "net.2.weight" in diff.unchanged and "mask" in diff.unchanged
    assert diff.metadata_changes == {"step": (1, 2)}
    assert diff.spec_changes == {}
    text = str(diff)
    assert "d: version 1 -> 2" in text
    assert "changed   net.0.weight: max |a-b| = 0.25" in text
    assert "metadata  step: 1 -> 2" in text

    reg.snapshot("d", toys.spec(hidden=5).build())
    wider = reg.diff("d", 2, 3)
    assert wider.changed["net.0.weight"] == math.inf
    assert wider.spec_changes == {"module_config.model_config_dict.hidden": (8, 5)}
    assert "net.0.weight: float32[8, 9] -> float32[5, 9]" in str(wider)
    assert reg.diff("d", 3, 3).identical


def test_diff_of_multi_modules_lists_added_and_removed_tensors(reg):
    reg.snapshot("m", toys.spec().build())
    reg.snapshot("m", toys.multi_spec().build())
    diff = reg.diff("m", 1, 2)
    assert "net.0.weight" in diff.removed and "p0/net.0.weight" in diff.added
    assert diff.to_dict()["added"] == diff.added


def test_diff_by_alias(three_versions):
    reg = three_versions
    reg.set_alias("pol", "best", 1)
    assert reg.diff("pol", "best", 3).a == 1


@pytest.mark.parametrize("where", ["local", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def test_export_then_import_round_trip(three_versions, tmp_path, where, request):
    reg = three_versions
    path = {"local": str(tmp_path / "ckpt"), "memory": "memory://exported/ckpt"}.get(where)
    if where == "s3":
        path = request.getfixturevalue("s3_bucket") + "/exported/ckpt"
    reg.export("pol", 2, path)
    restored = RLModule.from_checkpoint(path)
    assert type(restored) is toys.DictPolicy
    assert toys.states_equal(restored, reg.load("pol", 2))
    imported = reg.import_checkpoint("pol/imported", path, {"source": "export"})
    assert (imported.version, imported.metadata) == (1, {"source": "export"})
    assert toys.states_equal(reg.load("pol/imported"), restored)
    assert reg.version("pol/imported").spec_digest == reg.version("pol", 2).spec_digest


def test_export_by_alias_and_of_a_multi_module(reg, tmp_path):
    multi = toys.multi_spec().build()
    reg.snapshot("league", multi)
    reg.set_alias("league", "champion", 1)
    reg.export("league", None, tmp_path / "league", alias="champion")
    assert sorted(p.name for p in (tmp_path / "league").iterdir() if p.is_dir()) == ["p0", "p1"]
    assert toys.states_equal(RLModule.from_checkpoint(tmp_path / "league"), multi)
