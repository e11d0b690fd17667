"""Refusals of hostile or malformed checkpoints: no foreign import, a clear error naming the file."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from rlmodule import (
    CheckpointFormatError, CheckpointNotFoundError, MultiRLModuleSpec, RLModule, RLModuleConfig,
    StateMismatchError, UntrustedClassError,
)
from rlmodule.checkpoints import decode_value
from storage import Location
from rlmodule_toys import ToyTorchModule


@pytest.fixture
def evilmod(tmp_path, monkeypatch):
    """An importable, not yet imported module `evilmod` that creates a marker file when imported."""
    marker = tmp_path / "evilmod-was-imported"
    (tmp_path / "evilmod.py").write_text(textwrap.dedent(f"""
        open({str(marker)!r}, "w").close()
        class Foo:
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "evilmod" not in sys.modules
    yield marker
    sys.modules.pop("evilmod", None)


def _edit_json(url, name, fn):
    loc = Location(url)
    loc.write_json(name, fn(loc.read_json(name)))


def _state_of(module) -> dict:
    return {k: v.clone() for k, v in module.get_state().items()}


def _unchanged(module, before) -> None:
    after = module.get_state()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


FSSPEC_EXPLOIT = {"$object": "fsspec.spec.AbstractFileSystem",
                  "value": {"cls": "evilmod.Foo", "protocol": "file"}}


def test_object_tag_cannot_import_a_module_through_fsspec(toy_module, tmp_path, evilmod):
    import fsspec.spec  # noqa: F401  (imported, so only the allow-list stands in the way)

    url = toy_module.save_to_path(str(tmp_path / "ckpt"))
    _edit_json(url, "class_and_ctor_args.json", lambda d: {**d, "ctor_kwargs": {"x": FSSPEC_EXPLOIT}})
    with pytest.raises(UntrustedClassError) as e:
        RLModule.from_checkpoint(url)
    message = str(e.value)
    assert "class_and_ctor_args.json: ctor_kwargs['x']: tag '$object' names " \
           "'fsspec.spec.AbstractFileSystem', which is refused" in message
    assert "is not a subclass of any of rlmodule.rl_module.RLModuleConfig" in message
    assert not evilmod.exists()
    assert "evilmod" not in sys.modules


@pytest.mark.parametrize("value,message", [
    ({"$type": "fsspec.spec.AbstractFileSystem"},
     "value: tag '$type' names 'fsspec.spec.AbstractFileSystem', which is refused"),
    ({"$type": "builtins.object"}, "value: tag '$type' names 'builtins.object', which is refused"),
    ({"$object": "collections.OrderedDict", "value": {}},
     "value: tag '$object' names 'collections.OrderedDict', which is refused"),
    ([{"$object": "rlmodule.rl_module.RLModule", "value": {}}],
     "value[0]: tag '$object' names 'rlmodule.rl_module.RLModule', which is refused"),
])
def test_tags_resolve_only_allow_listed_classes(value, message):
    with pytest.raises(UntrustedClassError, match=message.replace("[", r"\[").replace("$", r"\$")):
        decode_value(value)


def test_tags_accept_our_configs_modules_and_catalogs():
    from rlmodule.catalog import Catalog

    assert decode_value({"$type": "rlmodule_toys.ToyTorchModule"}) is ToyTorchModule
    assert decode_value({"$type": "rlmodule.catalog.Catalog"}) is Catalog
    config = decode_value({"$object": "rlmodule.rl_module.RLModuleConfig",
                           "value": RLModuleConfig(model_config_dict={"a": 1}).to_dict()})
    assert isinstance(config, RLModuleConfig) and config.model_config_dict == {"a": 1}


def _write(name: str, data: bytes):
    return lambda loc: loc.write_bytes(name, data)


def _json(name: str, fn):
    return lambda loc: loc.write_json(name, fn(loc.read_json(name)))


def _truncate(name: str):
    return lambda loc: loc.write_bytes(name, loc.read_bytes(name)[:-3])


# (edit of the saved checkpoint, error, message, whether restore_from_path reads that file too)
MALFORMED = {
    "metadata list": (_write("metadata.json", b"[1, 2]"), CheckpointFormatError,
                      "metadata.json holds a JSON list, not an object", True),
    "metadata bad json": (_write("metadata.json", b"{not json"), CheckpointFormatError,
                          "metadata.json is not UTF-8 JSON", True),
    "ctor list": (_write("class_and_ctor_args.json", b'["x"]'), CheckpointFormatError,
                  "class_and_ctor_args.json holds a JSON list, not an object", False),
    "ctor bad json": (_write("class_and_ctor_args.json", b"\xff"), CheckpointFormatError,
                      "class_and_ctor_args.json is not UTF-8 JSON", False),
    "ctor unknown kwarg": (_json("class_and_ctor_args.json",
                                 lambda d: {**d, "ctor_kwargs": {"bogus": 1}}),
                           CheckpointFormatError,
                           "class_and_ctor_args.json: rlmodule_toys.ToyTorchModule cannot be built "
                           "from its ctor_args and ctor_kwargs: TypeError: ", False),
    "ctor extra arg": (_json("class_and_ctor_args.json",
                             lambda d: {**d, "ctor_args": d["ctor_args"] + [1, 2, 3, 4, 5, 6, 7]}),
                       CheckpointFormatError, "ToyTorchModule cannot be built from its ctor_args",
                       False),
    "ctor_args not list": (_json("class_and_ctor_args.json", lambda d: {**d, "ctor_args": {"a": 1}}),
                           CheckpointFormatError, "ctor_args is a JSON dict, not a list", False),
    "ctor_kwargs not object": (_json("class_and_ctor_args.json", lambda d: {**d, "ctor_kwargs": [1]}),
                               CheckpointFormatError, "ctor_kwargs is a JSON list, not an object",
                               False),
    "object value malformed": (_json("class_and_ctor_args.json",
                                     lambda d: {**d, "ctor_args": [{**d["ctor_args"][0],
                                                                    "value": [1]}]}),
                               CheckpointFormatError,
                               "ctor_args[0]: tag '$object' 'rlmodule.rl_module.RLModuleConfig' "
                               "cannot be rebuilt from its value: AttributeError", False),
    "state_file parent": (_json("metadata.json", lambda d: {**d, "state_file": "../x.safetensors"}),
                          CheckpointFormatError,
                          "metadata.json: state_file '../x.safetensors' is not a file name ending "
                          "in '.safetensors' inside the checkpoint folder", True),
    "state_file absolute": (_json("metadata.json", lambda d: {**d, "state_file": "/tmp/x.safetensors"}),
                            CheckpointFormatError,
                            "state_file '/tmp/x.safetensors' is not a file name", True),
    "state_file not str": (_json("metadata.json", lambda d: {**d, "state_file": 7}),
                           CheckpointFormatError, "state_file 7 is not a file name", True),
    "ctor file parent": (_json("metadata.json",
                               lambda d: {**d, "class_and_ctor_args_file": "../c.json"}),
                         CheckpointFormatError,
                         "class_and_ctor_args_file '../c.json' is not a file name ending in '.json'",
                         False),
    "truncated safetensors": (_truncate("module_state.safetensors"), CheckpointFormatError,
                              "module_state.safetensors is not a valid safetensors file", True),
    "state json list": (_write("module_state.json", b"[]"), CheckpointFormatError,
                        "module_state.json holds a JSON list, not an object", True),
    "state json bad": (_write("module_state.json", b"{"), CheckpointFormatError,
                       "module_state.json is not UTF-8 JSON", True),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_checkpoint_is_refused_naming_the_file(toy_module, toy_spec, tmp_path, case):
    edit, error, message, read_on_restore = MALFORMED[case]
    loc = Location(str(tmp_path / "ckpt"))
    toy_module.save_to_path(loc)
    edit(loc)
    with pytest.raises(error) as e:
        RLModule.from_checkpoint(loc.url)
    assert message in str(e.value)
    other = toy_spec.build()
    before = _state_of(other)
    if read_on_restore:
        with pytest.raises(error) as e:
            other.restore_from_path(loc.url)
        assert message in str(e.value)
    else:
        other.restore_from_path(loc.url)  # restoring reads only metadata and state files
        before = _state_of(toy_module)
    _unchanged(other, before)


def test_missing_state_file_named_in_metadata_is_not_found(toy_module, tmp_path):
    loc = Location(str(tmp_path / "ckpt"))
    toy_module.save_to_path(loc)
    _json("metadata.json", lambda d: {**d, "state_file": "other.safetensors"})(loc)
    with pytest.raises(CheckpointNotFoundError, match="other.safetensors is missing"):
        RLModule.from_checkpoint(loc.url)


def _add_tensor(loc, key: str, name: str = "module_state.safetensors") -> None:
    tensors = loc.load_tensors(name)
    tensors[key] = torch.zeros(2)
    loc.save_tensors(name, tensors)


def test_restore_refuses_tensor_keys_the_module_lacks(toy_module, toy_spec, tmp_path):
    loc = Location(str(tmp_path / "ckpt"))
    toy_module.save_to_path(loc)
    _add_tensor(loc, "extra.weight")
    _add_tensor(loc, "zz")
    other = toy_spec.build()
    before = _state_of(other)
    with pytest.raises(StateMismatchError) as e:
        other.restore_from_path(loc.url)
    assert str(e.value) == (f"checkpoint {loc.url}: ToyTorchModule has no state keys 'extra.weight', "
                            "'zz'; the checkpoint was saved from a different module")
    _unchanged(other, before)
    with pytest.raises(StateMismatchError, match="has no state keys 'extra.weight', 'zz'"):
        RLModule.from_checkpoint(loc.url)


def test_set_state_keeps_rllib_semantics_for_unknown_keys(toy_module, toy_spec):
    other = toy_spec.build()
    other.set_state({**toy_module.get_state(), "extra.weight": torch.zeros(2)})
    _unchanged(other, toy_module.get_state())


def test_learner_checkpoint_restores_into_inference_only_module_but_not_foreign_keys(
        toy_module, toy_spec, tmp_path):
    loc = Location(str(tmp_path / "ckpt"))
    toy_module.save_to_path(loc)
    assert "vf.weight" in loc.load_tensors("module_state.safetensors")
    toy_spec.inference_only = True
    actor = toy_spec.build()
    assert "vf.weight" not in actor.get_state()
    actor.restore_from_path(loc.url)  # the learner's vf.* tensors are dropped, as the hook does
    _unchanged(actor, toy_module.get_state(inference_only=True))
    _add_tensor(loc, "critic_extra")
    fresh = toy_spec.build()
    before = _state_of(fresh)
    with pytest.raises(StateMismatchError, match="ToyTorchModule has no state key 'critic_extra';"):
        fresh.restore_from_path(loc.url)
    _unchanged(fresh, before)


def test_unknown_key_in_one_module_of_a_multi_module_is_refused(toy_spec, tmp_path):
    multi = MultiRLModuleSpec(module_specs={"a": toy_spec, "b": toy_spec}).build()
    loc = Location(str(tmp_path / "multi"))
    multi.save_to_path(loc)
    _add_tensor(loc.child("b"), "stray")
    other = MultiRLModuleSpec(module_specs={"a": toy_spec, "b": toy_spec}).build()
    before = {mid: _state_of(other[mid]) for mid in ("a", "b")}
    with pytest.raises(StateMismatchError, match=r"checkpoint .*/multi/b: ToyTorchModule has no "
                                                 r"state key 'stray'"):
        other.restore_from_path(loc.url)
    for mid in ("a", "b"):
        _unchanged(other[mid], before[mid])
