"""Task families: ranges of task configurations, sampled deterministically from a PRNG key.

    family = ImageMLPFamily(datasets=("digits", "mnist5k_8"), widths=(32, 128), depths=(1, 2))
    spec = family.sample(jax.random.key(3))     # same key -> same TaskSpec, on any machine

Sampling runs on the host (numpy seeded from the key's bits), since it chooses shapes.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from metalearn.tasks.base import TaskSpec


def _rng(key) -> np.random.Generator:
  data = np.asarray(jax.random.key_data(key)).ravel().astype(np.uint64)
  return np.random.default_rng([int(x) for x in data])


def _log_uniform_int(rng, lo: int, hi: int) -> int:
  return int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


@dataclasses.dataclass(frozen=True)
class Family:
  """Base: ``sample(key) -> TaskSpec`` and ``sample_many(key, n)``."""

  def sample(self, key) -> TaskSpec:
    return self._sample(_rng(key))

  def sample_many(self, key, n: int) -> list[TaskSpec]:
    return [self.sample(k) for k in jax.random.split(key, n)]

  def _sample(self, rng) -> TaskSpec:
    raise NotImplementedError

  def to_dict(self) -> dict:
    return {"family": type(self).__name__, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class ImageMLPFamily(Family):
  datasets: Sequence[str] = ("digits", "mnist5k_8")
  widths: tuple[int, int] = (16, 128)          # log-uniform
  depths: tuple[int, int] = (1, 2)             # inclusive
  activations: Sequence[str] = ("relu", "tanh", "gelu")
  batch_sizes: Sequence[int] = (32, 64, 128)

  def _sample(self, rng):
    depth = int(rng.integers(self.depths[0], self.depths[1] + 1))
    width = _log_uniform_int(rng, *self.widths)
    return TaskSpec("image_mlp", dataset=str(rng.choice(list(self.datasets))),
                    hidden=(width,) * depth, activation=str(rng.choice(list(self.activations))),
                    batch_size=int(rng.choice(list(self.batch_sizes))))


@dataclasses.dataclass(frozen=True)
class CNNFamily(Family):
  datasets: Sequence[str] = ("digits",)
  channels: tuple[int, int] = (4, 16)
  depths: tuple[int, int] = (1, 3)
  activations: Sequence[str] = ("relu", "gelu")
  batch_sizes: Sequence[int] = (32, 64)

  def _sample(self, rng):
    depth = int(rng.integers(self.depths[0], self.depths[1] + 1))
    c = _log_uniform_int(rng, *self.channels)
    return TaskSpec("cnn", dataset=str(rng.choice(list(self.datasets))),
                    hidden=tuple(c * 2**i for i in range(depth)),
                    activation=str(rng.choice(list(self.activations))),
                    batch_size=int(rng.choice(list(self.batch_sizes))))


@dataclasses.dataclass(frozen=True)
class AutoencoderFamily(Family):
  """MLP autoencoders (MSE reconstruction): encoder widths shrink by 2-4x per layer."""

  datasets: Sequence[str] = ("digits", "mnist5k_8")
  widths: tuple[int, int] = (16, 128)          # first encoder layer, log-uniform
  depths: tuple[int, int] = (1, 2)             # encoder layers, inclusive
  activations: Sequence[str] = ("relu", "tanh", "gelu")
  batch_sizes: Sequence[int] = (32, 64)

  def _sample(self, rng):
    depth = int(rng.integers(self.depths[0], self.depths[1] + 1))
    width = _log_uniform_int(rng, *self.widths)
    hidden = [width]
    for _ in range(depth - 1):
      hidden.append(max(4, hidden[-1] // int(rng.integers(2, 5))))
    return TaskSpec("autoencoder", dataset=str(rng.choice(list(self.datasets))),
                    hidden=tuple(hidden), activation=str(rng.choice(list(self.activations))),
                    batch_size=int(rng.choice(list(self.batch_sizes))))


@dataclasses.dataclass(frozen=True)
class CharLMFamily(Family):
  dataset: str = "pychars"
  d_models: Sequence[int] = (32, 64)
  num_layers: tuple[int, int] = (1, 2)
  seq_lens: Sequence[int] = (32, 64)
  batch_sizes: Sequence[int] = (16, 32)

  def _sample(self, rng):
    d = int(rng.choice(list(self.d_models)))
    return TaskSpec("char_lm", dataset=self.dataset, d_model=d,
                    num_layers=int(rng.integers(self.num_layers[0], self.num_layers[1] + 1)),
                    num_heads=max(1, d // 16), seq_len=int(rng.choice(list(self.seq_lens))),
                    batch_size=int(rng.choice(list(self.batch_sizes))))


@dataclasses.dataclass(frozen=True)
class QuadraticFamily(Family):
  dims: tuple[int, int] = (4, 64)
  batch_size: int = 8

  def _sample(self, rng):
    return TaskSpec("quadratic", dim=_log_uniform_int(rng, *self.dims),
                    seed=int(rng.integers(0, 2**31 - 1)), batch_size=self.batch_size)


@dataclasses.dataclass(frozen=True)
class LinearRegressionFamily(Family):
  dims: tuple[int, int] = (4, 64)
  batch_sizes: Sequence[int] = (16, 64)

  def _sample(self, rng):
    return TaskSpec("linreg", dim=_log_uniform_int(rng, *self.dims),
                    seed=int(rng.integers(0, 2**31 - 1)),
                    batch_size=int(rng.choice(list(self.batch_sizes))))


FAMILIES = {
    "image_mlp": ImageMLPFamily,
    "cnn": CNNFamily,
    "autoencoder": AutoencoderFamily,
    "char_lm": CharLMFamily,
    "quadratic": QuadraticFamily,
    "linreg": LinearRegressionFamily,
}


def make_family(name: str, **kwargs) -> Family:
  if name not in FAMILIES:
    raise ValueError(f"unknown task family {name!r}; choose one of {sorted(FAMILIES)}.")
  return FAMILIES[name](**kwargs)
