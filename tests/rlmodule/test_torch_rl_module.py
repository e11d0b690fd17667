"""TorchRLModule state: exact tensors in, exact tensors out, refusals change nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlmodule import StateMismatchError


def test_get_state_returns_detached_cpu_copies_of_parameters_and_buffers(toy_module):
    state = toy_module.get_state()
    assert set(state) == set(toy_module.state_dict())
    assert state["bf"].dtype == torch.bfloat16 and state["steps"].dtype == torch.int32
    assert not state["encoder.weight"].requires_grad
    state["encoder.weight"].zero_()
    assert toy_module.encoder.weight.abs().sum() > 0


def test_inference_only_state_drops_learner_keys(toy_module, toy_spec):
    assert not any(k.startswith("vf.") for k in toy_module.get_state(inference_only=True))
    toy_spec.inference_only = True
    inference = toy_spec.build()
    inference.set_state(toy_module.get_state())
    assert torch.equal(inference.pi.weight, toy_module.pi.weight)


def test_set_state_is_exact_for_every_dtype(toy_module, toy_spec):
    other = toy_spec.build()
    other.set_state(toy_module.get_state())
    for key, value in toy_module.state_dict().items():
        got = other.state_dict()[key]
        assert got.dtype == value.dtype and torch.equal(got, value), key


def test_set_state_accepts_numpy(toy_module, toy_spec):
    other = toy_spec.build()
    other.set_state({k: v.numpy() for k, v in toy_module.get_state().items() if k != "bf"})
    assert torch.equal(other.scale, toy_module.scale) and other.scale.dtype == torch.float64


def test_missing_keys_keep_their_values(toy_module, toy_spec):
    other = toy_spec.build()
    before = other.pi.weight.clone()
    other.set_state({"encoder.weight": toy_module.encoder.weight.detach()})
    assert torch.equal(other.encoder.weight, toy_module.encoder.weight)
    assert torch.equal(other.pi.weight, before)


@pytest.mark.parametrize("key,value,message", [
    ("pi.weight", torch.zeros(2, 6), r"state key 'pi.weight': shape \(2, 6\) does not fit the "
                                     r"module's \(3, 6\)"),
    ("steps", torch.zeros(4, dtype=torch.int64), "state key 'steps': dtype int64 does not fit "
                                                 "the module's int32"),
    ("mask", [True, False, True], "state key 'mask': expected a tensor or numpy array, got list"),
])
def test_bad_tensors_are_refused_and_nothing_changes(toy_module, toy_spec, key, value, message):
    other = toy_spec.build()
    before = {k: v.clone() for k, v in other.state_dict().items()}
    state = toy_module.get_state()
    state[key] = value
    with pytest.raises(StateMismatchError, match=f"^{message}$"):
        other.set_state(state)
    for k, v in other.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_framework_and_numpy_scalar_state(toy_module):
    assert toy_module.framework == "torch"
    with pytest.raises(StateMismatchError, match="dtype float64 does not fit the module's int32"):
        toy_module.set_state({"steps": np.zeros(4)})


def test_get_state_copy_false_shares_the_modules_storage(toy_module):
    views = toy_module.get_state(copy=False)
    copies = toy_module.get_state()
    for key, tensor in toy_module.state_dict().items():
        assert views[key].data_ptr() == tensor.data_ptr(), key
        assert copies[key].data_ptr() != tensor.data_ptr(), key
        assert not views[key].requires_grad


def test_multi_module_forwards_copy_false(toy_module):
    multi = toy_module.as_multi_rl_module()
    views = multi.get_state(copy=False)["default_policy"]
    for key, tensor in toy_module.state_dict().items():
        assert views[key].data_ptr() == tensor.data_ptr(), key
