"""Catalog: encoder configs from the model config, distributions from the action space."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rlmodule.catalog import MODEL_DEFAULTS, Catalog
from rlmodule.distributions import (
    TorchCategorical,
    TorchDiagGaussian,
    TorchMultiCategorical,
    TorchMultiDistribution,
)
from rlmodule.models import (
    ACTOR,
    CRITIC,
    ENCODER_OUT,
    ActorCriticEncoderConfig,
    FreeLogStdMLPHeadConfig,
    MLPHeadConfig,
    get_activation,
    get_initializer,
)

OBS = gym.spaces.Box(-1.0, 1.0, (4,))


def catalog(action_space=gym.spaces.Discrete(2), **model_config):
    return Catalog(OBS, action_space, model_config)


def linear_shapes(module):
    return [tuple(m.weight.shape) for m in module.modules() if isinstance(m, nn.Linear)]


def test_defaults_follow_rllib_model_defaults():
    cat = catalog()
    encoder = cat.build_encoder("torch")
    assert linear_shapes(encoder) == [(256, 4), (256, 256)]
    assert [type(m) for m in encoder.net.mlp] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh]
    assert list(encoder.state_dict()) == [
        "net.mlp.0.weight", "net.mlp.0.bias", "net.mlp.2.weight", "net.mlp.2.bias"
    ]
    assert cat.latent_dims == [256]
    assert MODEL_DEFAULTS["vf_share_layers"] is True
    assert MODEL_DEFAULTS["fcnet_hiddens"] == [256, 256]


def test_hidden_is_honoured_and_encoder_runs():
    cat = catalog(hidden=[128, 64], fcnet_activation="relu")
    encoder = cat.build_encoder("torch")
    assert linear_shapes(encoder) == [(128, 4), (64, 128)]
    assert isinstance(encoder.net.mlp[1], nn.ReLU)
    out = encoder({"obs": torch.zeros(3, 4, dtype=torch.float64)})[ENCODER_OUT]
    assert out.shape == (3, 64) and out.dtype == torch.float32
    assert cat.latent_dims == [64]


def test_encoder_latent_dim_adds_a_layer():
    encoder = catalog(fcnet_hiddens=[32], encoder_latent_dim=8).build_encoder("torch")
    assert linear_shapes(encoder) == [(32, 4), (8, 32)]


def test_initializers_are_named_torch_init_functions():
    encoder = catalog(fcnet_bias_initializer="constant_",
                      fcnet_bias_initializer_config={"val": 0.5},
                      fcnet_weights_initializer="zeros").build_encoder("torch")
    assert torch.all(encoder.net.mlp[0].bias == 0.5)
    assert torch.all(encoder.net.mlp[0].weight == 0)


@pytest.mark.parametrize(
    "model_config, error, message",
    [
        ({"hidden": [8], "fcnet_hiddens": [16]},
         ValueError, r"sets both 'hidden' \[8\] and 'fcnet_hiddens' \[16\]: give one of them"),
        ({"hidden": []}, ValueError, "'fcnet_hiddens' \\(or 'hidden'\\) must list at least one"),
        ({"use_lstm": True}, ValueError, "recurrent and attention encoders are not supported"),
        ({"hidden": 64}, ValueError, "config .hidden. must be a list of positive ints, got 64"),
        ({"fcnet_hiddens": [8, 0]}, ValueError, r"'fcnet_hiddens' must be .*, got \[8, 0\]"),
        ({"post_fcnet_hiddens": [True]}, ValueError, "'post_fcnet_hiddens' must be a list"),
        ({"fcnet_activation": "gelu2"}, ValueError, "unknown activation 'gelu2'"),
        ({"fcnet_weights_initializer": "nope"}, ValueError, "unknown initializer 'nope'"),
    ],
)
def test_bad_model_config_is_refused(model_config, error, message):
    with pytest.raises(error, match=message):
        catalog(**model_config).build_encoder("torch")


def test_only_one_dimensional_box_observations():
    with pytest.raises(ValueError, match=r"observation space Box.*only 1-D Box observation"):
        Catalog(gym.spaces.Box(0, 1, (2, 3)), gym.spaces.Discrete(2), {})
    with pytest.raises(ValueError, match="no default encoder for observation space Discrete"):
        Catalog(gym.spaces.Discrete(3), gym.spaces.Discrete(2), {})


@pytest.mark.parametrize(
    "space, expected, dim",
    [
        (gym.spaces.Discrete(3), TorchCategorical, 3),
        (gym.spaces.Box(-1, 1, (2,)), TorchDiagGaussian, 4),
        (gym.spaces.MultiDiscrete([2, 5]), TorchMultiCategorical, 7),
        (gym.spaces.Tuple([gym.spaces.Discrete(2), gym.spaces.Box(-1, 1, (3,))]),
         TorchMultiDistribution, 8),
        (gym.spaces.Dict({"b": gym.spaces.MultiDiscrete([3]), "a": gym.spaces.Discrete(4)}),
         TorchMultiDistribution, 7),
    ],
)
def test_action_space_picks_the_distribution(space, expected, dim):
    dist_cls = catalog(space).get_action_dist_cls(framework="torch")
    assert issubclass(dist_cls, expected)
    assert dist_cls.required_input_dim(space) == dim
    dist = dist_cls.from_logits(torch.randn(5, dim))
    sample = dist.sample()
    assert dist.logp(sample).shape == (5,)
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
        assert space.contains(sample[0].numpy().astype(space.dtype))
    elif isinstance(space, gym.spaces.Box):
        assert sample.shape == (5, *space.shape)  # a Gaussian is unbounded: no `contains`


def test_nested_space_samples_have_the_space_structure():
    space = gym.spaces.Dict({"b": gym.spaces.MultiDiscrete([3, 2]), "a": gym.spaces.Discrete(4)})
    dist = catalog(space).get_action_dist_cls("torch").from_logits(torch.randn(1, 9))
    sample = dist.sample()
    assert set(sample) == {"a", "b"} and sample["b"].shape == (1, 2)
    action = {k: v[0].numpy() for k, v in sample.items()}
    assert space.contains({"a": int(action["a"]), "b": action["b"].astype(space["b"].dtype)})


@pytest.mark.parametrize(
    "space, error, message",
    [
        (gym.spaces.Box(0, 5, (2,), dtype="int64"), ValueError,
         r"Box\(..., int64\) action spaces are not supported"),
        (gym.spaces.Box(0, 1, (2, 2)), ValueError,
         r"action space has multiple dimensions \(2, 2\)"),
        (gym.spaces.MultiBinary(3), NotImplementedError, "unsupported action space: MultiBinary"),
    ],
)
def test_unsupported_action_spaces(space, error, message):
    with pytest.raises(error, match=message):
        catalog(space).get_action_dist_cls("torch")


def test_only_torch_is_a_framework():
    with pytest.raises(ValueError, match="unknown framework 'tf2': only 'torch' is supported"):
        catalog().get_action_dist_cls("tf2")
    with pytest.raises(ValueError, match="unknown framework 'jax': rlmodule builds models"):
        catalog().build_encoder("jax")


def test_heads_and_actor_critic_encoders():
    head = MLPHeadConfig(input_dims=[8], hidden_layer_dims=[], output_layer_dim=3).build("torch")
    # RLlib >= 2.40's order: the head's own buffer first, then its MLP
    assert list(head.state_dict()) == ["log_std_clip_param_const", "net.mlp.0.weight",
                                       "net.mlp.0.bias"]
    assert head(torch.zeros(2, 8)).shape == (2, 3)
    free = FreeLogStdMLPHeadConfig(input_dims=[8], hidden_layer_dims=[], output_layer_dim=4).build()
    assert free(torch.zeros(2, 8)).shape == (2, 4) and "log_std" in free.state_dict()
    base = catalog(hidden=[16])._encoder_config
    shared = ActorCriticEncoderConfig(base_encoder_config=base, shared=True).build("torch")
    out = shared({"obs": torch.zeros(1, 4)})[ENCODER_OUT]
    assert out[ACTOR] is out[CRITIC]
    split = ActorCriticEncoderConfig(base_encoder_config=base, shared=False).build("torch")
    assert {k.split(".")[0] for k in split.state_dict()} == {"actor_encoder", "critic_encoder"}
    actor_only = ActorCriticEncoderConfig(base, shared=False, inference_only=True).build()
    assert {k.split(".")[0] for k in actor_only.state_dict()} == {"actor_encoder"}
    assert set(actor_only({"obs": torch.zeros(1, 4)})[ENCODER_OUT]) == {ACTOR}


def test_config_refusals():
    with pytest.raises(ValueError, match=r"MLPHeadConfig: input_dims must be \[n\], got \[2, 3\]"):
        MLPHeadConfig(input_dims=[2, 3])
    with pytest.raises(ValueError, match="output_layer_dim must be even, got 3"):
        FreeLogStdMLPHeadConfig(input_dims=[2], output_layer_dim=3)
    with pytest.raises(TypeError, match="initializer must be the name of a torch.nn.init function"):
        get_initializer(nn.init.zeros_)
    assert get_activation("linear") is None and get_activation(None) is None


def test_custom_catalog_from_rllib_docstring():
    class MyCatalog(Catalog):
        def __init__(self, observation_space, action_space, model_config_dict):
            super().__init__(observation_space, action_space, model_config_dict)
            self.my_model_config = MLPHeadConfig(
                hidden_layer_dims=[64, 32], input_dims=[self.observation_space.shape[0]]
            )

        def build_my_head(self, framework: str):
            return self.my_model_config.build(framework=framework)

    cat = MyCatalog(gym.spaces.Box(0, 1), gym.spaces.Box(0, 1), {})
    my_head = cat.build_my_head(framework="torch")
    assert my_head(torch.Tensor([[1]])).shape == (1, 32)


leaf_spaces = st.one_of(
    st.integers(1, 5).map(gym.spaces.Discrete),
    st.integers(1, 3).map(lambda n: gym.spaces.Box(-1.0, 1.0, (n,), dtype="float32")),
    st.lists(st.integers(1, 4), min_size=1, max_size=3).map(gym.spaces.MultiDiscrete),
)
action_spaces = st.recursive(
    leaf_spaces,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(gym.spaces.Tuple),
        st.dictionaries(st.sampled_from("abcd"), children, min_size=1, max_size=3).map(
            gym.spaces.Dict),
    ),
    max_leaves=5,
)


def _discrete_leaves_fit(space, sample) -> bool:
    if isinstance(space, gym.spaces.Tuple):
        return all(_discrete_leaves_fit(s, x) for s, x in zip(space.spaces, sample))
    if isinstance(space, gym.spaces.Dict):
        return set(space.spaces) == set(sample) and all(
            _discrete_leaves_fit(s, sample[k]) for k, s in space.spaces.items())
    if isinstance(space, gym.spaces.Box):
        return tuple(sample.shape[1:]) == space.shape
    return all(space.contains(row.numpy().astype(space.dtype)) for row in sample)


@settings(max_examples=30, deadline=None)
@given(action_spaces, st.integers(1, 3))
def test_any_nested_action_space_round_trips_through_its_distribution(space, batch):
    dist_cls = catalog(space).get_action_dist_cls("torch")
    width = dist_cls.required_input_dim(space)
    dist = dist_cls.from_logits(torch.randn(batch, width))
    sample = dist.sample()
    assert _discrete_leaves_fit(space, sample)
    assert dist.logp(sample).shape == (batch,)
    assert dist.entropy().shape == (batch,)
    assert _discrete_leaves_fit(space, dist.to_deterministic().sample())
