"""RLlib's own gym spaces: Simplex, Repeated and FlexDict (`ray.rllib.utils.spaces`), without ray.

They follow RLlib 2.35's constructors (its Simplex checks `concentration.shape == shape[:-1]`;
later releases changed that check) and are what RLlib's checkpoints and space dicts name.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

__all__ = ["FlexDict", "Repeated", "Simplex"]


class Simplex(gym.Space):
    """A d-1 dimensional simplex in R^d (d = shape[-1]): coordinates in [0, 1] summing to 1.

    `concentration` parametrises the Dirichlet distribution `sample()` draws from (all ones,
    i.e. uniform, by default).
    """

    def __init__(self, shape, concentration=None, dtype=np.float32):
        assert type(shape) in [tuple, list]
        super().__init__(tuple(shape), dtype)
        self.dim = self.shape[-1]
        if concentration is not None:
            concentration = np.asarray(concentration)
            assert concentration.shape == tuple(shape[:-1]), (
                f"{concentration.shape} vs {tuple(shape[:-1])}")
            self.concentration = concentration
        else:
            self.concentration = np.array([1] * self.dim)

    def sample(self):
        """A point of the simplex drawn from the Dirichlet distribution."""
        return self.np_random.dirichlet(self.concentration, size=self.shape[:-1]).astype(self.dtype)

    def contains(self, x) -> bool:
        """True if `x` has the shape and its last axis sums to 1."""
        x = np.asarray(x)
        return x.shape == self.shape and bool(np.allclose(np.sum(x, axis=-1), 1.0))

    def __repr__(self) -> str:
        return f"Simplex({self.shape}; {self.concentration})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, Simplex) and self.shape == other.shape
                and np.shape(self.concentration) == np.shape(other.concentration)
                and bool(np.allclose(self.concentration, other.concentration)))


class Repeated(gym.Space):
    """A list of 0 to `max_len` elements of `child_space`."""

    def __init__(self, child_space: gym.Space, max_len: int):
        super().__init__()
        self.child_space = child_space
        self.max_len = max_len

    def sample(self):
        """A list of 1 to max_len samples of the child space."""
        return [self.child_space.sample()
                for _ in range(self.np_random.integers(1, self.max_len + 1))]

    def contains(self, x) -> bool:
        """True for a list (or array) of at most max_len members of the child space."""
        return (isinstance(x, (list, np.ndarray)) and len(x) <= self.max_len
                and all(self.child_space.contains(c) for c in x))

    def __repr__(self) -> str:
        return f"Repeated({self.child_space}, {self.max_len})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, Repeated) and self.max_len == other.max_len
                and self.child_space == other.child_space)


class FlexDict(gym.spaces.Dict):
    """A Dict space whose keys may be added after construction (`space["k"] = Box(...)`)."""

    def __init__(self, spaces=None, **spaces_kwargs):
        assert (spaces is None) or (not spaces_kwargs), (
            "Use either Dict(spaces=dict(...)) or Dict(foo=x, bar=z)")
        spaces = spaces_kwargs if spaces is None else spaces
        for space in spaces.values():
            self._assert_space(space)
        super().__init__(spaces=spaces)

    @staticmethod
    def _assert_space(space) -> None:
        assert isinstance(space, gym.spaces.Space), "Values of the dict should be instances of gym.Space"

    def __getitem__(self, key):
        return self.spaces[key]

    def __setitem__(self, key, space) -> None:
        self._assert_space(space)
        self.spaces[key] = space

    def __repr__(self) -> str:
        return "FlexDict(" + ", ".join(f"{k}:{s}" for k, s in self.spaces.items()) + ")"
