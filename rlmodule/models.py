"""The models a Catalog builds: MLP encoders and heads, and their configs.

Mirrors RLlib's `core/models/configs.py` and `core/models/torch/{primitives,encoder,heads}.py`
closely enough that state-dict keys match RLlib's (`encoder.encoder.net.mlp.0.weight`,
`pi.net.mlp.0.bias`, ...), so RLlib users recognise a checkpoint's tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from rlmodule import limits
from rlmodule.columns import Columns

ENCODER_OUT = "encoder_out"
ACTOR = "actor"
CRITIC = "critic"

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
}


def get_activation(name: Optional[str]) -> Optional[nn.Module]:
    """A fresh activation module for `name`; None for "linear" or None."""
    if name is None or name == "linear":
        return None
    key = name.lower() if isinstance(name, str) else name
    if key not in _ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}: expected one of {sorted(_ACTIVATIONS) + ['linear']}"
        )
    return _ACTIVATIONS[key]()


def get_initializer(name: Optional[str]) -> Optional[Callable[..., Any]]:
    """The `torch.nn.init` function called `name` (with or without the trailing "_")."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError(f"initializer must be the name of a torch.nn.init function, got {name!r}")
    fn = getattr(nn.init, name if name.endswith("_") else name + "_", None)
    if not callable(fn):
        raise ValueError(f"unknown initializer {name!r}: not a function in torch.nn.init")
    return fn


def _check_framework(framework: str) -> None:
    if framework != "torch":
        raise ValueError(
            f"unknown framework {framework!r}: rlmodule builds models for 'torch' only"
        )


def _linear(in_dim, out_dim, use_bias, w_init, w_init_config, b_init, b_init_config) -> nn.Linear:
    limits.check_layer(in_dim, out_dim)
    layer = nn.Linear(in_dim, out_dim, bias=use_bias)
    if w_init is not None:
        get_initializer(w_init)(layer.weight, **(w_init_config or {}))
    if b_init is not None and use_bias:
        get_initializer(b_init)(layer.bias, **(b_init_config or {}))
    return layer


class TorchMLP(nn.Module):
    """Dense layers sharing one activation, plus an optional output layer (RLlib's TorchMLP)."""

    def __init__(self, config: "MLPHeadConfig"):
        super().__init__()
        c = config
        layers: list[nn.Module] = []
        dims = [int(c.input_dims[0]), *[int(d) for d in c.hidden_layer_dims]]
        for in_dim, out_dim in zip(dims[:-1], dims[1:]):
            layers.append(
                _linear(in_dim, out_dim, c.hidden_layer_use_bias,
                        c.hidden_layer_weights_initializer,
                        c.hidden_layer_weights_initializer_config,
                        c.hidden_layer_bias_initializer, c.hidden_layer_bias_initializer_config)
            )
            if c.hidden_layer_use_layernorm:
                layers.append(nn.LayerNorm(out_dim))
            activation = get_activation(c.hidden_layer_activation)
            if activation is not None:
                layers.append(activation)
        if c.output_layer_dim is not None:
            layers.append(
                _linear(dims[-1], int(c.output_layer_dim), c.output_layer_use_bias,
                        c.output_layer_weights_initializer,
                        c.output_layer_weights_initializer_config,
                        c.output_layer_bias_initializer, c.output_layer_bias_initializer_config)
            )
            activation = get_activation(c.output_layer_activation)
            if activation is not None:
                layers.append(activation)
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Runs the layers on `x` cast to float32."""
        return self.mlp(x.to(torch.float32))


def _register_log_std_clip(head: nn.Module, config: "MLPHeadConfig") -> None:
    """RLlib >= 2.40's buffer `log_std_clip_param_const` (in every head's state, used if clipping)."""
    head.clip_log_std = bool(config.clip_log_std)
    head.register_buffer("log_std_clip_param_const",
                         torch.tensor([float(config.log_std_clip_param)], dtype=torch.float32))


class TorchMLPHead(nn.Module):
    """A head: latent tensor in, tensor out (`self.net` is a TorchMLP).

    With `clip_log_std` (PPO's DiagGaussian policy head) the second half of the output, the log
    stds, is clamped to +-`log_std_clip_param_const`, as RLlib >= 2.40 does.
    """

    def __init__(self, config: "MLPHeadConfig"):
        super().__init__()
        self.config = config
        self.net = TorchMLP(config)
        _register_log_std_clip(self, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The head's output for latent `x`."""
        if not self.clip_log_std:
            return self.net(x)
        means, log_stds = torch.chunk(self.net(x), chunks=2, dim=-1)
        clip = self.log_std_clip_param_const
        return torch.cat((means, torch.clamp(log_stds, -clip, clip)), dim=-1)


class TorchFreeLogStdMLPHead(nn.Module):
    """A Gaussian head whose log std is a free parameter, not a function of the input."""

    def __init__(self, config: "FreeLogStdMLPHeadConfig"):
        super().__init__()
        self.config = config
        half = int(config.output_layer_dim) // 2
        plain = {f.name: getattr(config, f.name) for f in fields(MLPHeadConfig)}
        self.net = TorchMLP(MLPHeadConfig(**{**plain, "output_layer_dim": half}))
        self.log_std = nn.Parameter(torch.zeros(half))
        _register_log_std_clip(self, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Means from the MLP, concatenated with the (broadcast, clipped if asked) free log std."""
        mean = self.net(x)
        log_std = self.log_std
        if self.clip_log_std:
            clip = self.log_std_clip_param_const
            log_std = torch.clamp(log_std, -clip, clip)
        return torch.cat([mean, log_std.expand_as(mean)], dim=-1)


class TorchMLPEncoder(nn.Module):
    """An encoder: `{"obs": x}` in, `{ENCODER_OUT: latent}` out (`self.net` is a TorchMLP)."""

    def __init__(self, config: "MLPEncoderConfig"):
        super().__init__()
        self.config = config
        self.net = TorchMLP(config)

    def forward(self, inputs: dict, **kwargs) -> dict:
        """Encodes `inputs["obs"]`."""
        return {ENCODER_OUT: self.net(inputs[Columns.OBS])}


class TorchActorCriticEncoder(nn.Module):
    """One shared encoder (`encoder`) or separate `actor_encoder` and `critic_encoder`.

    Output: `{ENCODER_OUT: {ACTOR: latent, CRITIC: latent}}`; an inference-only encoder builds
    no critic encoder and outputs no CRITIC latent.
    """

    def __init__(self, config: "ActorCriticEncoderConfig"):
        super().__init__()
        self.config = config
        base = config.base_encoder_config
        if config.shared:
            self.encoder = base.build(framework="torch")
        else:
            self.actor_encoder = base.build(framework="torch")
            self.critic_encoder = None
            if not config.inference_only:
                self.critic_encoder = base.build(framework="torch")

    def forward(self, inputs: dict, **kwargs) -> dict:
        """Actor (and, unless inference-only, critic) latents for `inputs`."""
        if self.config.shared:
            actor = critic = self.encoder(inputs, **kwargs)[ENCODER_OUT]
        else:
            actor = self.actor_encoder(inputs, **kwargs)[ENCODER_OUT]
            critic = None
            if self.critic_encoder is not None:
                critic = self.critic_encoder(inputs, **kwargs)[ENCODER_OUT]
        out = {ACTOR: actor}
        if not self.config.inference_only and critic is not None:
            out[CRITIC] = critic
        return {ENCODER_OUT: out}


@dataclass
class MLPHeadConfig:
    """Configures an MLP head (RLlib's MLPHeadConfig fields and defaults)."""

    input_dims: Sequence[int] = None
    hidden_layer_dims: Sequence[int] = field(default_factory=lambda: [256, 256])
    hidden_layer_use_bias: bool = True
    hidden_layer_activation: Optional[str] = "relu"
    hidden_layer_use_layernorm: bool = False
    hidden_layer_weights_initializer: Optional[str] = None
    hidden_layer_weights_initializer_config: Optional[dict] = None
    hidden_layer_bias_initializer: Optional[str] = None
    hidden_layer_bias_initializer_config: Optional[dict] = None
    output_layer_dim: Optional[int] = None
    output_layer_use_bias: bool = True
    output_layer_activation: Optional[str] = "linear"
    output_layer_weights_initializer: Optional[str] = None
    output_layer_weights_initializer_config: Optional[dict] = None
    output_layer_bias_initializer: Optional[str] = None
    output_layer_bias_initializer_config: Optional[dict] = None
    clip_log_std: bool = False
    """Clamp the log stds (second half of the output) to +-log_std_clip_param (RLlib >= 2.40)."""
    log_std_clip_param: float = 20.0
    """The clamp bound; kept as the head's `log_std_clip_param_const` buffer."""

    def __post_init__(self):
        if not self.input_dims or len(self.input_dims) != 1:
            raise ValueError(
                f"{type(self).__name__}: input_dims must be [n], got {self.input_dims!r}"
            )
        if self.output_layer_dim is None and not self.hidden_layer_dims:
            raise ValueError(
                f"{type(self).__name__}: needs hidden_layer_dims or output_layer_dim "
                "to know its size"
            )

    @property
    def output_dims(self) -> list[int]:
        """`[size of the output]`."""
        if self.output_layer_dim is not None:
            return [int(self.output_layer_dim)]
        return [int(self.hidden_layer_dims[-1])]

    def build(self, framework: str = "torch") -> nn.Module:
        """A TorchMLPHead."""
        _check_framework(framework)
        return TorchMLPHead(self)


@dataclass
class FreeLogStdMLPHeadConfig(MLPHeadConfig):
    """An MLP head for DiagGaussian with a free (state-independent) log std."""

    def __post_init__(self):
        super().__post_init__()
        if self.output_layer_dim is None or int(self.output_layer_dim) % 2:
            raise ValueError(
                "FreeLogStdMLPHeadConfig: output_layer_dim must be even, "
                f"got {self.output_layer_dim!r}"
            )

    def build(self, framework: str = "torch") -> nn.Module:
        """A TorchFreeLogStdMLPHead."""
        _check_framework(framework)
        return TorchFreeLogStdMLPHead(self)


@dataclass
class MLPEncoderConfig(MLPHeadConfig):
    """Configures an MLP encoder over a 1-D Box observation."""

    def build(self, framework: str = "torch") -> nn.Module:
        """A TorchMLPEncoder."""
        _check_framework(framework)
        return TorchMLPEncoder(self)


@dataclass
class ActorCriticEncoderConfig:
    """An encoder shared by actor and critic, or one encoder each (`shared=False`)."""

    base_encoder_config: MLPEncoderConfig = None
    shared: bool = True
    inference_only: bool = False

    @property
    def output_dims(self) -> list[int]:
        """The base encoder's output dims."""
        return self.base_encoder_config.output_dims

    def build(self, framework: str = "torch") -> nn.Module:
        """A TorchActorCriticEncoder."""
        _check_framework(framework)
        return TorchActorCriticEncoder(self)


__all__ = [
    "ACTOR",
    "CRITIC",
    "ENCODER_OUT",
    "ActorCriticEncoderConfig",
    "FreeLogStdMLPHeadConfig",
    "MLPEncoderConfig",
    "MLPHeadConfig",
    "TorchActorCriticEncoder",
    "TorchFreeLogStdMLPHead",
    "TorchMLP",
    "TorchMLPEncoder",
    "TorchMLPHead",
    "get_activation",
    "get_initializer",
]
