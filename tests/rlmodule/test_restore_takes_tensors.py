"""``restore_state``: a TorchRLModule takes the fresh tensors ``restore_from_path`` read instead of copying them.

The module keeps its Parameter objects (an optimizer made before goes on with them) and takes each
fresh tensor as their data, unless copying is what keeps the module right: a module that loads its
own way (a load hook, its own ``_load_from_state_dict`` or ``set_state``), tensors in shared memory,
tensors that share storage with each other, or new tensors that are not 64-byte aligned (those of a
file read into memory mostly are not: they are copied; ``rlreg://`` hands over aligned ones, see
tests/registry/test_registry_rlreg_direct.py). The sharing check has a control: taking such tensors
regardless leaves the module's own view of that storage stale, and the test sees it.
"""

from __future__ import annotations

import pytest
import torch

from rlmodule import torch_rl_module
from rlmodule_toys import ToyTorchModule, toy_batch


class SharedStorageModule(ToyTorchModule):
    """Two buffers that are views of one tensor the module also uses itself."""

    def setup(self):
        super().setup()
        self.flat = torch.zeros(20)
        self.register_buffer("low", self.flat[:10])
        self.register_buffer("high", self.flat[10:])


class HookedModule(ToyTorchModule):
    """Counts the load_state_dict pre-hook's calls."""

    def setup(self):
        super().setup()
        self.loads = 0

        def count(*args, **kwargs):
            self.loads += 1

        self._register_load_state_dict_pre_hook(count)


class OwnSetState(ToyTorchModule):
    def set_state(self, state):
        self.set_calls = getattr(self, "set_calls", 0) + 1
        super().set_state(state)


def _spec_like(toy_spec, cls):
    import dataclasses

    return dataclasses.replace(toy_spec, module_class=cls)


def _saved(toy_spec, cls, tmp_path, seed=1):
    torch.manual_seed(seed)
    source = _spec_like(toy_spec, cls).build()
    with torch.no_grad():
        for t in source.state_dict(keep_vars=True).values():
            if t.is_floating_point():
                t.add_(1.0)
    return source, source.save_to_path(str(tmp_path / f"ckpt-{cls.__name__}"))


def _fresh(module) -> dict:
    """A state of fresh, aligned tensors (as a restore reads them)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same_state(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_restore_state_takes_the_tensors_and_keeps_the_parameter_objects(toy_spec, tmp_path):
    source, _ = _saved(toy_spec, ToyTorchModule, tmp_path)
    torch.manual_seed(2)
    target = toy_spec.build()
    params = dict(target.named_parameters())
    before = {k: p.data_ptr() for k, p in params.items()}
    opt = torch.optim.SGD(target.parameters(), lr=0.1)
    state = _fresh(source)
    target.restore_state(state)
    _same_state(target, source)
    assert all(target.state_dict()[k].data_ptr() == t.data_ptr() for k, t in state.items() if t.numel())
    assert dict(target.named_parameters()) == params  # the same objects
    assert all(params[k] is p for k, p in target.named_parameters())
    taken = [k for k, p in params.items() if p.data_ptr() != before[k]]
    assert taken == list(params), f"copied into, not taken: {sorted(set(params) - set(taken))}"
    assert all(p.requires_grad for p in params.values())
    target.forward_train(toy_batch())["vf_preds"].sum().backward()
    opt.step()  # the optimizer made before the restore trains the restored parameters
    assert not torch.equal(target.encoder.weight, source.encoder.weight)


def test_a_restore_from_a_file_is_exact_and_keeps_the_parameter_objects(toy_spec, tmp_path):
    source, url = _saved(toy_spec, ToyTorchModule, tmp_path)
    target = toy_spec.build()
    params = dict(target.named_parameters())
    target.restore_from_path(url)
    _same_state(target, source)
    assert all(params[k] is p for k, p in target.named_parameters())


def test_two_restores_of_one_checkpoint_share_no_memory(toy_spec, tmp_path):
    source, url = _saved(toy_spec, ToyTorchModule, tmp_path)
    a, b = toy_spec.build(), toy_spec.build()
    a.restore_from_path(url)
    b.restore_from_path(url)
    with torch.no_grad():
        a.encoder.weight.add_(5.0)
        a.steps.add_(1)
    _same_state(b, source)


@pytest.mark.parametrize("take_all", [False, True], ids=["checked", "control: taken regardless"])
def test_tensors_sharing_storage_are_copied_into(toy_spec, tmp_path, monkeypatch, take_all):
    source, _ = _saved(toy_spec, SharedStorageModule, tmp_path)
    with torch.no_grad():
        source.flat.copy_(torch.arange(20.0))
    if take_all:
        monkeypatch.setattr(torch_rl_module, "_takeable", lambda own, tensors, hidden=None: set(tensors))
    target = _spec_like(toy_spec, SharedStorageModule).build()
    target.restore_state(_fresh(source))
    _same_state(target, source)
    stale = not torch.equal(target.flat, torch.arange(20.0))
    assert stale is take_all


def test_a_module_that_loads_its_own_way_is_copied_into(toy_spec, tmp_path):
    source, url = _saved(toy_spec, HookedModule, tmp_path)
    target = _spec_like(toy_spec, HookedModule).build()
    before = target.encoder.weight.data_ptr()
    target.restore_state(_fresh(source))
    assert target.loads == 1 and target.encoder.weight.data_ptr() == before
    _same_state(target, source)

    source, url = _saved(toy_spec, OwnSetState, tmp_path)
    target = _spec_like(toy_spec, OwnSetState).build()
    target.restore_state(_fresh(source))
    assert target.set_calls == 1
    _same_state(target, source)


def test_a_module_in_shared_memory_stays_there(toy_spec, tmp_path):
    source, url = _saved(toy_spec, ToyTorchModule, tmp_path)
    target = toy_spec.build().share_memory()
    target.restore_state(_fresh(source))
    _same_state(target, source)
    assert all(t.is_shared() for t in target.state_dict(keep_vars=True).values() if t.numel())


def test_a_restore_in_torchs_swap_mode_loads_as_load_state_dict_does(toy_spec, tmp_path, monkeypatch):
    """With torch.__future__'s swap_module_params_on_conversion, loading swaps each tensor in through
    ``module_load`` (a tensor subclass's hook): a restore then loads as ``load_state_dict`` does.
    (Control, run by hand: without restore_state's check of the mode, module_load is never called.)"""
    source, url = _saved(toy_spec, ToyTorchModule, tmp_path)
    target = toy_spec.build()
    loads = []
    real = torch.Tensor.module_load
    monkeypatch.setattr(torch.Tensor, "module_load", lambda self, other, assign=False: loads.append(1) or real(
        self, other, assign=assign))
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        target.restore_from_path(url)
    finally:
        torch.__future__.set_swap_module_params_on_conversion(False)
    _same_state(target, source)
    assert loads, "module_load was not called: the swap mode was ignored"
