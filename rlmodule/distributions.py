"""Action distributions with RLlib's interface: built from logits, sampled, scored.

`Distribution` is RLlib's abstract base (`ray.rllib.models.distributions`); the `Torch*`
classes mirror `ray.rllib.models.torch.torch_distributions` with two defects fixed:
`TorchCategorical.rsample` works when built from logits (a straight-through one-hot sample),
and `TorchMultiCategorical.from_logits` honours `temperatures`.
"""

from __future__ import annotations

import abc
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
import tree

# RLlib's numeric guards (`ray.rllib.utils.numpy`).
SMALL_NUMBER = 1e-6
MIN_LOG_NN_OUTPUT = -5.0
MAX_LOG_NN_OUTPUT = 2.0


def _shape(sample_shape) -> torch.Size:
    return torch.Size(() if sample_shape is None else sample_shape)


def _require_space(space: gym.Space, expected: type, dist: str) -> None:
    if not isinstance(space, expected):
        raise TypeError(f"{dist} needs a {expected.__name__} space, got {space!r}")


class Distribution(abc.ABC):
    """The base class for a distribution over a (possibly nested) random variable."""

    @abc.abstractmethod
    def sample(self, *, sample_shape=None, **kwargs):
        """Draws a sample (no gradient to the parameters)."""

    @abc.abstractmethod
    def rsample(self, *, sample_shape=None, **kwargs):
        """Draws a re-parameterised sample (gradients flow to the parameters)."""

    @abc.abstractmethod
    def logp(self, value, **kwargs):
        """The log-likelihood of `value`."""

    @abc.abstractmethod
    def kl(self, other: "Distribution", **kwargs):
        """The KL divergence KL(self || other)."""

    @abc.abstractmethod
    def entropy(self, **kwargs):
        """The entropy of the distribution."""

    @staticmethod
    @abc.abstractmethod
    def required_input_dim(space: gym.Space, **kwargs) -> int:
        """The length of the flat input (logits) vector this class needs for `space`."""

    @classmethod
    def from_logits(cls, logits, **kwargs) -> "Distribution":
        """Creates the distribution from a batch of flat logits vectors."""
        raise NotImplementedError(f"{cls.__name__} does not implement from_logits()")

    @classmethod
    def get_partial_dist_cls(parent_cls, **partial_kwargs) -> type["Distribution"]:
        """A subclass whose `from_logits`/`required_input_dim` get `partial_kwargs` bound."""

        class DistributionPartial(parent_cls):
            @staticmethod
            def _merge_kwargs(**kwargs):
                overlap = set(kwargs) & set(partial_kwargs)
                if overlap:
                    raise ValueError(
                        f"cannot override {sorted(overlap)}: they were bound when the partial "
                        f"class of {parent_cls.__name__} was made"
                    )
                return {**partial_kwargs, **kwargs}

            @classmethod
            def required_input_dim(cls, space: gym.Space, **kwargs) -> int:
                merged = cls._merge_kwargs(**kwargs)
                bound = merged.setdefault("space", space)
                if bound != space:
                    raise ValueError(
                        f"{cls.__name__} was bound to space {bound!r}, asked about {space!r}"
                    )
                return parent_cls.required_input_dim(**merged)

            @classmethod
            def from_logits(cls, logits, **kwargs) -> "Distribution":
                dist = parent_cls.from_logits(logits, **cls._merge_kwargs(**kwargs))
                dist.__class__ = cls  # so type(dist) is the partial class, as in RLlib
                return dist

        DistributionPartial.__name__ = f"{parent_cls.__name__}Partial"
        DistributionPartial.__qualname__ = f"{parent_cls.__qualname__}Partial"
        DistributionPartial.partial_kwargs = dict(partial_kwargs)
        return DistributionPartial

    def to_deterministic(self) -> "Distribution":
        """The deterministic (mode) version of this distribution."""
        raise NotImplementedError(f"{type(self).__name__} has no deterministic version")


class TorchDistribution(Distribution, abc.ABC):
    """A Distribution wrapping a `torch.distributions.Distribution` in `self._dist`."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self._dist = self._get_torch_distribution(*args, **kwargs)

    @abc.abstractmethod
    def _get_torch_distribution(self, *args, **kwargs) -> torch.distributions.Distribution:
        """Returns the wrapped torch distribution."""

    def logp(self, value, **kwargs):
        """`log_prob` of the wrapped distribution."""
        return self._dist.log_prob(value, **kwargs)

    def entropy(self, **kwargs):
        """Entropy of the wrapped distribution."""
        return self._dist.entropy()

    def kl(self, other: Distribution, **kwargs):
        """`kl_divergence` between the wrapped distributions."""
        return torch.distributions.kl.kl_divergence(self._dist, other._dist)

    def sample(self, *, sample_shape=None, **kwargs):
        """A sample of shape `sample_shape + batch_shape + event_shape`."""
        return self._dist.sample(_shape(sample_shape))

    def rsample(self, *, sample_shape=None, **kwargs):
        """A re-parameterised sample."""
        return self._dist.rsample(_shape(sample_shape))


class TorchCategorical(TorchDistribution):
    """A categorical distribution from exactly one of `logits` or `probs`.

    `temperature` sharpens (<1) or flattens (>1) it: `probs = softmax(logits / temperature)`.
    """

    def __init__(self, logits=None, probs=None, temperature: float = 1.0) -> None:
        if (logits is None) == (probs is None):
            raise ValueError("TorchCategorical: exactly one of `probs` and `logits` must be set")
        if not temperature > 0:
            raise ValueError(f"TorchCategorical: temperature must be > 0, got {temperature!r}")
        if temperature != 1.0:
            logits = (logits if logits is not None else torch.log(probs)) / temperature
            probs = None
        self.logits = logits
        self.probs = probs
        self.temperature = temperature
        super().__init__(logits=logits, probs=probs)

    def _get_torch_distribution(self, logits=None, probs=None):
        return torch.distributions.Categorical(logits=logits, probs=probs)

    @staticmethod
    def required_input_dim(space: gym.Space, **kwargs) -> int:
        """`n` of a Discrete space."""
        _require_space(space, gym.spaces.Discrete, "TorchCategorical")
        return int(space.n)

    def rsample(self, *, sample_shape=None, **kwargs):
        """A straight-through one-hot sample: one-hot forward, softmax gradient backward."""
        probs = self._dist.probs  # computed from logits when built from logits
        index = self._dist.sample(_shape(sample_shape))
        one_hot = torch.nn.functional.one_hot(index, probs.shape[-1]).to(probs.dtype)
        return (one_hot - probs).detach() + probs

    @classmethod
    def from_logits(cls, logits, **kwargs) -> "TorchCategorical":
        """A categorical over the last axis of `logits`."""
        return TorchCategorical(logits=logits, **kwargs)

    def to_deterministic(self) -> "TorchDeterministic":
        """The argmax action."""
        source = self.probs if self.probs is not None else self.logits
        return TorchDeterministic(loc=torch.argmax(source, dim=-1))


class TorchDiagGaussian(TorchDistribution):
    """A Gaussian with diagonal covariance; logp, entropy and kl sum over the last axis."""

    def __init__(self, loc, scale) -> None:
        self.loc = loc
        self.scale = scale
        super().__init__(loc=loc, scale=scale)

    def _get_torch_distribution(self, loc, scale):
        return torch.distributions.Normal(loc, scale)

    def logp(self, value, **kwargs):
        """Sum of the per-dimension log-likelihoods."""
        return super().logp(value).sum(-1)

    def entropy(self, **kwargs):
        """Sum of the per-dimension entropies."""
        return super().entropy().sum(-1)

    def kl(self, other: Distribution, **kwargs):
        """Sum of the per-dimension KL divergences."""
        return super().kl(other).sum(-1)

    @staticmethod
    def required_input_dim(space: gym.Space, **kwargs) -> int:
        """Two numbers (mean, log std) per element of a Box."""
        _require_space(space, gym.spaces.Box, "TorchDiagGaussian")
        return int(np.prod(space.shape, dtype=np.int64) * 2)

    @classmethod
    def from_logits(cls, logits, **kwargs) -> "TorchDiagGaussian":
        """The first half of the last axis is the mean, the second half the log std."""
        loc, log_std = logits.chunk(2, dim=-1)
        return TorchDiagGaussian(loc=loc, scale=log_std.exp())

    def to_deterministic(self) -> "TorchDeterministic":
        """The mean."""
        return TorchDeterministic(loc=self.loc)


class TorchSquashedGaussian(TorchDistribution):
    """A Gaussian squashed by tanh and rescaled into `[low, high]`."""

    def __init__(self, loc, scale=1.0, low: float = -1.0, high: float = 1.0):
        if not np.all(np.less(low, high)):
            raise ValueError(f"TorchSquashedGaussian: low {low!r} must be below high {high!r}")
        self.loc = loc
        self.low = low
        self.high = high
        super().__init__(loc=loc, scale=scale)

    def _get_torch_distribution(self, loc, scale):
        return torch.distributions.Normal(loc, scale)

    def sample(self, *, sample_shape=None, **kwargs):
        """A squashed sample inside `[low, high]`."""
        return self._squash(super().sample(sample_shape=sample_shape))

    def rsample(self, *, sample_shape=None, **kwargs):
        """A re-parameterised squashed sample."""
        return self._squash(super().rsample(sample_shape=sample_shape))

    def logp(self, value, **kwargs):
        """Log-likelihood with the tanh change-of-variables term, summed over the last axis."""
        value = self._unsquash(value)
        logp = torch.clamp(super().logp(value), -100, 100).sum(-1)
        return logp - torch.log(1 - torch.tanh(value) ** 2 + SMALL_NUMBER).sum(-1)

    def entropy(self, **kwargs):
        """Not defined in closed form: raises ValueError."""
        raise ValueError("entropy() is not defined for TorchSquashedGaussian")

    def kl(self, other: Distribution, **kwargs):
        """Not defined in closed form: raises ValueError."""
        raise ValueError("kl() is not defined for TorchSquashedGaussian")

    def _squash(self, sample):
        sample = ((torch.tanh(sample) + 1.0) / 2.0) * (self.high - self.low) + self.low
        return torch.clamp(sample, self.low, self.high)

    def _unsquash(self, sample):
        sample = (sample - self.low) / (self.high - self.low) * 2.0 - 1.0
        return torch.atanh(torch.clamp(sample, -1.0 + SMALL_NUMBER, 1.0 - SMALL_NUMBER))

    @staticmethod
    def required_input_dim(space: gym.Space, **kwargs) -> int:
        """Two numbers (mean, log std) per element of a Box."""
        _require_space(space, gym.spaces.Box, "TorchSquashedGaussian")
        return int(np.prod(space.shape, dtype=np.int64) * 2)

    @classmethod
    def from_logits(cls, logits, low=-1.0, high=1.0, **kwargs) -> "TorchSquashedGaussian":
        """Mean and log std (clipped to RLlib's [-5, 2]) from the two halves of `logits`."""
        loc, log_std = logits.chunk(2, dim=-1)
        scale = torch.clamp(log_std, MIN_LOG_NN_OUTPUT, MAX_LOG_NN_OUTPUT).exp()
        return TorchSquashedGaussian(loc=loc, scale=scale, low=low, high=high)

    def to_deterministic(self) -> "TorchDeterministic":
        """The squashed mean (RLlib returns the unsquashed one, outside the bounds)."""
        return TorchDeterministic(loc=self._squash(self.loc))


class TorchDeterministic(Distribution):
    """A point mass at `loc`: samples return `loc`, logp is zero."""

    def __init__(self, loc) -> None:
        super().__init__()
        self.loc = loc

    def sample(self, *, sample_shape=None, **kwargs):
        """`loc`, broadcast to `sample_shape + loc.shape`."""
        shape = _shape(sample_shape) + self.loc.shape
        return torch.ones(shape, device=self.loc.device, dtype=self.loc.dtype) * self.loc

    def rsample(self, *, sample_shape=None, **kwargs):
        """Same as sample: `loc` is its own re-parameterisation (gradients flow to it)."""
        return self.sample(sample_shape=sample_shape)

    def logp(self, value, **kwargs):
        """Zeros shaped like `loc`, as in RLlib."""
        return torch.zeros_like(self.loc)

    def entropy(self, **kwargs):
        """Not supported: raises RuntimeError."""
        raise RuntimeError(f"`entropy()` not supported for {type(self).__name__}.")

    def kl(self, other: Distribution, **kwargs):
        """Not supported: raises RuntimeError."""
        raise RuntimeError(f"`kl()` not supported for {type(self).__name__}.")

    @staticmethod
    def required_input_dim(space: gym.Space, **kwargs) -> int:
        """One number per element of a Box."""
        _require_space(space, gym.spaces.Box, "TorchDeterministic")
        return int(np.prod(space.shape, dtype=np.int64))

    @classmethod
    def from_logits(cls, logits, **kwargs) -> "TorchDeterministic":
        """The logits are the value."""
        return TorchDeterministic(loc=logits)

    def to_deterministic(self) -> "TorchDeterministic":
        """Itself."""
        return self


class TorchMultiCategorical(Distribution):
    """Independent categoricals for a MultiDiscrete space; samples stack on the last axis."""

    def __init__(self, categoricals: Sequence[TorchCategorical]):
        super().__init__()
        self._cats = list(categoricals)

    def sample(self, *, sample_shape=None, **kwargs):
        """One index per categorical, stacked on the last axis."""
        return torch.stack([c.sample(sample_shape=sample_shape) for c in self._cats], dim=-1)

    def rsample(self, *, sample_shape=None, **kwargs):
        """Straight-through one-hot samples, concatenated like the logits they come from."""
        return torch.cat([c.rsample(sample_shape=sample_shape) for c in self._cats], dim=-1)

    def logp(self, value, **kwargs):
        """Sum of the categoricals' log-likelihoods of `value[..., i]`."""
        parts = torch.unbind(value, dim=-1)
        return torch.stack([c.logp(v) for c, v in zip(self._cats, parts)]).sum(0)

    def entropy(self, **kwargs):
        """Sum of the categoricals' entropies."""
        return torch.stack([c.entropy() for c in self._cats], dim=-1).sum(-1)

    def kl(self, other: Distribution, **kwargs):
        """Sum of the pairwise KL divergences."""
        kls = [c.kl(o) for c, o in zip(self._cats, other._cats)]
        return torch.stack(kls, dim=-1).sum(-1)

    @staticmethod
    def required_input_dim(space: gym.Space, **kwargs) -> int:
        """Sum of `nvec` of a MultiDiscrete space."""
        _require_space(space, gym.spaces.MultiDiscrete, "TorchMultiCategorical")
        return int(np.sum(space.nvec))

    @classmethod
    def from_logits(cls, logits, input_lens: Sequence[int], temperatures=None, **kwargs):
        """Splits `logits` by `input_lens`; categorical i uses `temperatures[i]` (default 1)."""
        input_lens = [int(n) for n in input_lens]
        temperatures = list(temperatures) if temperatures else [1.0] * len(input_lens)
        if sum(input_lens) != logits.shape[-1]:
            raise ValueError(
                f"input_lens {input_lens} sum to {sum(input_lens)}, "
                f"but logits have {logits.shape[-1]} on the last axis"
            )
        if len(temperatures) != len(input_lens):
            raise ValueError(
                f"got {len(temperatures)} temperatures for {len(input_lens)} categoricals"
            )
        parts = torch.split(logits, input_lens, dim=-1)
        return TorchMultiCategorical(
            [TorchCategorical(logits=p, temperature=t) for p, t in zip(parts, temperatures)]
        )

    def to_deterministic(self) -> TorchDeterministic:
        """The argmax of every categorical, stacked like `sample()` (RLlib returns a list)."""
        return TorchDeterministic(
            loc=torch.stack([c.to_deterministic().loc for c in self._cats], dim=-1)
        )


def _flat_width(dist: Distribution) -> int:
    """How many columns of a flat, concatenated action tensor belong to `dist`."""
    if isinstance(dist, TorchCategorical):
        return 1
    if isinstance(dist, TorchMultiCategorical):
        return len(dist._cats)
    sample = dist.sample()
    return 1 if sample.dim() <= 1 else int(sample.shape[-1])


class TorchMultiDistribution(Distribution):
    """Child distributions in a (nested) struct, for Tuple and Dict action spaces."""

    def __init__(self, child_distribution_struct: Any):
        super().__init__()
        self._original_struct = child_distribution_struct
        self._flat_child_distributions = tree.flatten(child_distribution_struct)

    def _unflatten(self, flat):
        return tree.unflatten_as(self._original_struct, list(flat))

    def sample(self, *, sample_shape=None, **kwargs):
        """A struct of the children's samples."""
        return self._unflatten(
            d.sample(sample_shape=sample_shape) for d in self._flat_child_distributions
        )

    def rsample(self, *, sample_shape=None, **kwargs):
        """A struct of the children's re-parameterised samples."""
        return self._unflatten(
            d.rsample(sample_shape=sample_shape) for d in self._flat_child_distributions
        )

    def logp(self, value, **kwargs):
        """Sum of the children's log-likelihoods; `value` is a struct or a flat tensor."""
        if isinstance(value, torch.Tensor):
            widths = [_flat_width(d) for d in self._flat_child_distributions]
            parts = list(torch.split(value, widths, dim=-1))
        else:
            parts = tree.flatten(value)
        total = 0
        for part, dist in zip(parts, self._flat_child_distributions):
            if isinstance(dist, TorchCategorical) and part.dim() > 1 and part.shape[-1] == 1:
                part = part.squeeze(-1)
            total = total + dist.logp(part)
        return total

    def kl(self, other: Distribution, **kwargs):
        """Sum of the children's KL divergences."""
        pairs = zip(self._flat_child_distributions, other._flat_child_distributions)
        return sum(d.kl(o) for d, o in pairs)

    def entropy(self, **kwargs):
        """Sum of the children's entropies."""
        return sum(d.entropy() for d in self._flat_child_distributions)

    @staticmethod
    def required_input_dim(space: gym.Space, input_lens=(), **kwargs) -> int:
        """Sum of the children's input lengths."""
        return int(sum(tree.flatten(input_lens)))

    @classmethod
    def from_logits(
        cls,
        logits,
        child_distribution_cls_struct: Mapping | Sequence,
        input_lens,
        space: gym.Space | None = None,
        **kwargs,
    ) -> "TorchMultiDistribution":
        """Splits `logits` by `input_lens` and builds each child class from its slice."""
        lens = [int(n) for n in tree.flatten(input_lens)]
        classes = tree.flatten(child_distribution_cls_struct)
        if len(lens) != len(classes):
            raise ValueError(f"got {len(lens)} input_lens for {len(classes)} child distributions")
        if sum(lens) != logits.shape[-1]:
            raise ValueError(
                f"input_lens {lens} sum to {sum(lens)}, "
                f"but logits have {logits.shape[-1]} on the last axis"
            )
        children = [c.from_logits(p) for c, p in zip(classes, torch.split(logits, lens, dim=-1))]
        return TorchMultiDistribution(tree.unflatten_as(child_distribution_cls_struct, children))

    def to_deterministic(self) -> "TorchMultiDistribution":
        """The same struct of the children's deterministic versions."""
        return TorchMultiDistribution(
            self._unflatten(d.to_deterministic() for d in self._flat_child_distributions)
        )


__all__ = [
    "Distribution",
    "TorchCategorical",
    "TorchDeterministic",
    "TorchDiagGaussian",
    "TorchDistribution",
    "TorchMultiCategorical",
    "TorchMultiDistribution",
    "TorchSquashedGaussian",
]
