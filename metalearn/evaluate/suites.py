"""Evaluation suites: named lists of ``(TaskSpec, num_steps)`` entries.

    for spec, num_steps in get_suite("demo"): ...

* ``tiny``: two very small tasks, for tests (seconds).
* ``demo``: three small bundled-data tasks at 200 steps (the quickstart's evaluation).
* ``in_distribution``: tasks sampled with fixed keys from the meta-training families (image MLPs on
  digits / mnist5k_8, CNNs on digits) at horizons 200-1000.
* ``out_of_distribution``: architectures, datasets and horizons outside those families: wide and
  deep MLPs on 28x28 and 14x14 MNIST, CNNs on MNIST, a character-level transformer, an
  autoencoder, linear regression, and three tasks at 5,000-10,000 steps (10x the meta-training
  horizons).

Suites are built on first use (sampling families needs JAX), so importing this module is cheap.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, NamedTuple

import jax

from metalearn.tasks import CNNFamily, ImageMLPFamily, TaskSpec


class SuiteTask(NamedTuple):
  spec: TaskSpec
  num_steps: int

  @property
  def id(self) -> str:
    return f"{self.spec.name}@{self.num_steps}"


def _tiny():
  return [SuiteTask(TaskSpec("linreg", dim=8, batch_size=32), 60),
          SuiteTask(TaskSpec("image_mlp", dataset="digits", hidden=(16,), batch_size=32), 60)]


def _demo():
  return [
      SuiteTask(TaskSpec("image_mlp", dataset="digits", hidden=(32,), batch_size=64), 200),
      SuiteTask(TaskSpec("image_mlp", dataset="mnist5k_8", hidden=(64, 64), activation="gelu",
                         batch_size=64), 200),
      SuiteTask(TaskSpec("autoencoder", dataset="mnist5k_14", hidden=(32,), batch_size=64), 200),
  ]


def _in_distribution():
  mlps = ImageMLPFamily(datasets=("digits", "mnist5k_8"))
  cnns = CNNFamily(datasets=("digits",))
  mlp_horizons = (200, 500, 1000, 200, 500, 1000)
  cnn_horizons = (200, 500)
  return ([SuiteTask(mlps.sample(jax.random.key(i)), n) for i, n in enumerate(mlp_horizons)]
          + [SuiteTask(cnns.sample(jax.random.key(i)), n) for i, n in enumerate(cnn_horizons)])


def _out_of_distribution():
  return [
      # Wider and deeper MLPs, on larger images than meta-training saw.
      SuiteTask(TaskSpec("image_mlp", dataset="mnist5k", hidden=(256,) * 3, batch_size=64), 500),
      SuiteTask(TaskSpec("image_mlp", dataset="mnist5k_14", hidden=(256,) * 4, batch_size=64),
                1000),
      # CNNs on MNIST.
      SuiteTask(TaskSpec("cnn", dataset="mnist5k_14", hidden=(8, 16, 32), batch_size=32), 300),
      SuiteTask(TaskSpec("cnn", dataset="mnist5k", hidden=(8, 16), batch_size=32), 200),
      # Other kinds of models and losses.
      SuiteTask(TaskSpec("char_lm", dataset="pychars", seq_len=32, d_model=32, num_layers=2,
                         num_heads=2, batch_size=16), 1000),
      SuiteTask(TaskSpec("autoencoder", dataset="mnist5k_14", hidden=(128, 32), batch_size=64),
                1000),
      SuiteTask(TaskSpec("linreg", dim=32, batch_size=32), 1000),
      # 10x the meta-training horizons.
      SuiteTask(TaskSpec("linreg", dim=32, batch_size=32), 10000),
      SuiteTask(TaskSpec("autoencoder", dataset="mnist5k_14", hidden=(64,), batch_size=32), 5000),
      SuiteTask(TaskSpec("image_mlp", dataset="mnist5k_14", hidden=(64,) * 3, batch_size=32),
                5000),
  ]


class _Suites(Mapping):
  """name -> list of SuiteTask, built on first access."""

  def __init__(self, builders: dict[str, Callable[[], list[SuiteTask]]]):
    self._builders = builders
    self._built: dict[str, list[SuiteTask]] = {}

  def __getitem__(self, name):
    if name not in self._built:
      self._built[name] = self._builders[name]()
    return list(self._built[name])

  def __iter__(self):
    return iter(self._builders)

  def __len__(self):
    return len(self._builders)


SUITES = _Suites({"tiny": _tiny, "demo": _demo, "in_distribution": _in_distribution,
                  "out_of_distribution": _out_of_distribution})


def get_suite(name: str) -> list[SuiteTask]:
  """The suite's ``(spec, num_steps)`` entries; ValueError naming the valid suites otherwise."""
  if name not in SUITES:
    raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}.")
  return SUITES[name]
