"""The distributions against torch.distributions numerics, and RLlib's two defects fixed."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Categorical, Normal, kl_divergence

from rlmodule.distributions import (
    Distribution,
    TorchCategorical,
    TorchDeterministic,
    TorchDiagGaussian,
    TorchMultiCategorical,
    TorchMultiDistribution,
    TorchSquashedGaussian,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def close(a, b, atol=1e-6):
    torch.testing.assert_close(a, b, atol=atol, rtol=1e-5)


# --- Categorical ---------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-20, 20), min_size=2, max_size=6), st.integers(0, 5))
def test_categorical_matches_torch(logits, action):
    logits = torch.tensor([logits])
    action = torch.tensor([action % logits.shape[-1]])
    ours, ref = TorchCategorical.from_logits(logits), Categorical(logits=logits)
    close(ours.logp(action), ref.log_prob(action))
    close(ours.entropy(), ref.entropy())


def test_categorical_kl_and_sample_shape():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    ours = TorchCategorical(logits=a).kl(TorchCategorical(logits=b))
    close(ours, kl_divergence(Categorical(logits=a), Categorical(logits=b)))
    assert TorchCategorical(logits=a).sample().shape == (4,)
    assert TorchCategorical(logits=a).sample(sample_shape=(2,)).shape == (2, 4)


def test_categorical_rsample_from_logits_is_straight_through_one_hot():
    logits = torch.randn(5, 4, requires_grad=True)
    sample = TorchCategorical.from_logits(logits).rsample()
    assert sample.shape == (5, 4)
    assert torch.equal(sample.detach().sum(-1), torch.ones(5))
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    (sample * torch.arange(4.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_categorical_rsample_from_probs_and_with_sample_shape():
    probs = torch.tensor([[0.0, 1.0, 0.0]])
    sample = TorchCategorical(probs=probs).rsample(sample_shape=(3,))
    assert torch.equal(sample.detach(), torch.tensor([[[0.0, 1.0, 0.0]]] * 3))


def test_categorical_temperature_sharpens_the_probabilities():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    dist = TorchCategorical(logits=logits, temperature=0.5)
    close(dist._dist.probs, torch.softmax(logits / 0.5, -1))
    from_probs = TorchCategorical(probs=torch.softmax(logits, -1), temperature=0.5)
    close(from_probs._dist.probs, torch.softmax(logits / 0.5, -1))


def test_categorical_deterministic_and_input_dim():
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, 0.0]])
    det = TorchCategorical.from_logits(logits).to_deterministic()
    assert isinstance(det, TorchDeterministic)
    assert det.sample().tolist() == [1, 0]
    assert TorchCategorical(probs=torch.tensor([0.2, 0.8])).to_deterministic().loc.item() == 1
    assert TorchCategorical.required_input_dim(gym.spaces.Discrete(7)) == 7


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of `probs` and `logits` must be set"),
        ({"logits": torch.zeros(2), "probs": torch.ones(2) / 2}, "exactly one of"),
        ({"logits": torch.zeros(2), "temperature": 0.0}, "temperature must be > 0, got 0.0"),
    ],
)
def test_categorical_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TorchCategorical(**kwargs)


def test_required_input_dim_names_the_wrong_space():
    with pytest.raises(TypeError, match=r"TorchCategorical needs a Discrete space, got Box"):
        TorchCategorical.required_input_dim(gym.spaces.Box(-1, 1, (2,)))
    with pytest.raises(TypeError, match="TorchDiagGaussian needs a Box space"):
        TorchDiagGaussian.required_input_dim(gym.spaces.Discrete(2))


# --- Gaussians and Deterministic -----------------------------------------------------------------


def test_diag_gaussian_matches_torch_summed_over_last_axis():
    logits = torch.randn(6, 4)
    dist = TorchDiagGaussian.from_logits(logits)
    loc, log_std = logits[:, :2], logits[:, 2:]
    ref = Normal(loc, log_std.exp())
    value = torch.randn(6, 2)
    close(dist.logp(value), ref.log_prob(value).sum(-1))
    close(dist.entropy(), ref.entropy().sum(-1))
    other = Normal(torch.zeros(6, 2), torch.ones(6, 2))
    close(dist.kl(TorchDiagGaussian(torch.zeros(6, 2), torch.ones(6, 2))),
          kl_divergence(ref, other).sum(-1))
    assert torch.equal(dist.to_deterministic().sample(), loc)
    assert TorchDiagGaussian.required_input_dim(gym.spaces.Box(-1, 1, (3,))) == 6


def test_diag_gaussian_rsample_carries_gradients():
    logits = torch.randn(3, 4, requires_grad=True)
    TorchDiagGaussian.from_logits(logits).rsample().sum().backward()
    assert logits.grad.abs().sum() > 0


def test_squashed_gaussian_stays_in_bounds_and_matches_a_tanh_transform():
    logits = torch.randn(50, 2)
    dist = TorchSquashedGaussian.from_logits(logits, low=-2.0, high=3.0)
    sample = dist.sample(sample_shape=(4,))
    assert sample.shape == (4, 50, 1) and sample.min() >= -2.0 and sample.max() <= 3.0
    loc, log_std = logits.chunk(2, -1)
    ref = torch.distributions.TransformedDistribution(
        Normal(loc, log_std.clamp(-5, 2).exp()),
        [torch.distributions.TanhTransform(), torch.distributions.AffineTransform(0.5, 2.5)],
    )
    value = ref.sample().clamp(-1.9, 2.9)
    # RLlib's formula omits the constant log of the affine scale (2.5 per dimension).
    close(dist.logp(value), ref.log_prob(value).sum(-1) + torch.log(torch.tensor(2.5)), atol=1e-3)
    assert torch.allclose(dist.to_deterministic().sample(), dist._squash(loc))


def test_squashed_gaussian_refusals():
    dist = TorchSquashedGaussian(torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="entropy\\(\\) is not defined for TorchSquashedGaussian"):
        dist.entropy()
    with pytest.raises(ValueError, match="kl\\(\\) is not defined"):
        dist.kl(dist)
    with pytest.raises(ValueError, match="low 1.0 must be below high 1.0"):
        TorchSquashedGaussian(torch.zeros(2), low=1.0, high=1.0)


def test_deterministic():
    loc = torch.tensor([[1.0, 2.0]], requires_grad=True)
    dist = TorchDeterministic.from_logits(loc)
    assert torch.equal(dist.sample(sample_shape=(3,)).detach(), loc.detach().expand(3, 1, 2))
    assert torch.equal(dist.logp(torch.zeros(1, 2)), torch.zeros(1, 2))
    dist.rsample().sum().backward()
    assert torch.equal(loc.grad, torch.ones(1, 2))
    assert dist.to_deterministic() is dist
    assert TorchDeterministic.required_input_dim(gym.spaces.Box(0, 1, (2, 3))) == 6
    with pytest.raises(RuntimeError, match="`entropy\\(\\)` not supported for TorchDeterministic"):
        dist.entropy()
    with pytest.raises(RuntimeError, match="`kl\\(\\)` not supported"):
        dist.kl(dist)


# --- MultiCategorical ----------------------------------------------------------------------------


def test_multi_categorical_matches_independent_categoricals():
    logits = torch.randn(5, 7)
    dist = TorchMultiCategorical.from_logits(logits, input_lens=[3, 4])
    refs = [Categorical(logits=logits[:, :3]), Categorical(logits=logits[:, 3:])]
    value = torch.stack([refs[0].sample(), refs[1].sample()], -1)
    close(dist.logp(value), refs[0].log_prob(value[:, 0]) + refs[1].log_prob(value[:, 1]))
    close(dist.entropy(), refs[0].entropy() + refs[1].entropy())
    other = TorchMultiCategorical.from_logits(torch.zeros(5, 7), input_lens=[3, 4])
    assert dist.kl(other).shape == (5,)
    assert dist.sample().shape == (5, 2)
    one_hots = dist.rsample()
    assert one_hots.shape == (5, 7)
    assert torch.equal(one_hots[:, :3].sum(-1).detach(), torch.ones(5))
    assert torch.equal(one_hots[:, 3:].sum(-1).detach(), torch.ones(5))
    det = dist.to_deterministic().sample()
    assert torch.equal(det, torch.stack([logits[:, :3].argmax(-1), logits[:, 3:].argmax(-1)], -1))
    assert TorchMultiCategorical.required_input_dim(gym.spaces.MultiDiscrete([3, 4])) == 7


def test_multi_categorical_honours_temperatures():
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0, 3.0]])
    dist = TorchMultiCategorical.from_logits(logits, input_lens=[2, 3], temperatures=[0.5, 4.0])
    close(dist._cats[0]._dist.probs, torch.softmax(logits[:, :2] / 0.5, -1))
    close(dist._cats[1]._dist.probs, torch.softmax(logits[:, 2:] / 4.0, -1))


def test_multi_categorical_refusals():
    with pytest.raises(ValueError, match=r"input_lens \[2, 2\] sum to 4, but logits have 5"):
        TorchMultiCategorical.from_logits(torch.zeros(1, 5), input_lens=[2, 2])
    with pytest.raises(ValueError, match="got 1 temperatures for 2 categoricals"):
        TorchMultiCategorical.from_logits(torch.zeros(1, 4), [2, 2], temperatures=[2.0])


# --- MultiDistribution and partial classes -------------------------------------------------------


def _tuple_dist(logits):
    md_partial = TorchMultiCategorical.get_partial_dist_cls(
        space=gym.spaces.MultiDiscrete([2, 3]), input_lens=[2, 3]
    )
    classes = (TorchCategorical, {"a": TorchDiagGaussian, "b": md_partial})
    return TorchMultiDistribution.from_logits(logits, classes, input_lens=[3, 4, 5], space=None)


def test_multi_distribution_nested_and_flat_logp_agree():
    logits = torch.randn(4, 12)
    dist = _tuple_dist(logits)
    sample = dist.sample()
    assert sample[0].shape == (4,) and sample[1]["a"].shape == (4, 2)
    assert sample[1]["b"].shape == (4, 2)
    flat = torch.cat([sample[0][:, None].float(), sample[1]["a"], sample[1]["b"].float()], -1)
    close(dist.logp(sample), dist.logp(flat))
    cat, gauss = Categorical(logits=logits[:, :3]), Normal(logits[:, 3:5], logits[:, 5:7].exp())
    expected = cat.entropy() + gauss.entropy().sum(-1) + dist._flat_child_distributions[2].entropy()
    close(dist.entropy(), expected)
    assert dist.kl(_tuple_dist(torch.zeros(4, 12))).shape == (4,)
    det = dist.to_deterministic().sample()
    assert torch.equal(det[0], logits[:, :3].argmax(-1))
    assert TorchMultiDistribution.required_input_dim(None, input_lens={"x": 3, "y": [4, 5]}) == 12


def test_multi_distribution_refuses_wrong_lengths():
    with pytest.raises(ValueError, match="got 2 input_lens for 1 child distributions"):
        TorchMultiDistribution.from_logits(torch.zeros(1, 4), [TorchCategorical], [2, 2])


def test_partial_dist_cls_binds_kwargs_and_refuses_overrides():
    space = gym.spaces.MultiDiscrete([2, 3])
    partial = TorchMultiCategorical.get_partial_dist_cls(space=space, input_lens=[2, 3])
    assert partial.__name__ == "TorchMultiCategoricalPartial"
    assert issubclass(partial, TorchMultiCategorical) and issubclass(partial, Distribution)
    dist = partial.from_logits(torch.zeros(1, 5))
    assert type(dist) is partial
    assert partial.required_input_dim(space=space, model_config={}) == 5
    with pytest.raises(ValueError, match=r"cannot override \['input_lens'\]"):
        partial.from_logits(torch.zeros(1, 5), input_lens=[5])
    with pytest.raises(ValueError, match="was bound to space MultiDiscrete"):
        partial.required_input_dim(space=gym.spaces.MultiDiscrete([4]))


def test_base_class_defaults_raise():
    class Uniform(Distribution):
        sample = rsample = logp = kl = entropy = lambda self, *a, **k: None
        required_input_dim = staticmethod(lambda space, **k: 2)

    with pytest.raises(NotImplementedError, match="Uniform does not implement from_logits"):
        Uniform.from_logits(torch.zeros(2))
    with pytest.raises(NotImplementedError, match="Uniform has no deterministic version"):
        Uniform().to_deterministic()
