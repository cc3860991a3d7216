"""Evaluation suites: named lists of ``(TaskSpec, num_steps)`` entries.

    for spec, num_steps in get_suite("demo"): ...

* ``tiny``: two very small tasks, for tests (seconds).
* ``demo``: three small bundled-data tasks at 200 steps (the quickstart's evaluation).
* ``in_distribution``: tasks sampled with fixed keys from the meta-training families (image MLPs on
  digits / mnist5k_8, CNNs on digits) at horizons 200-1000.
* ``out_of_distribution``: 15 tasks outside those families (``OOD_REASONS`` says why, per task):
  deep MLPs on 28x28 and 14x14 MNIST, a CNN, a GroupNorm CNN, a narrow and a wide character-level
  transformer, a GRU language model, tabular MLPs on breast_cancer and wine, an autoencoder,
  linear regression, and four tasks at 5,000-10,000 steps (5-10x the meta-training horizons).

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


# The meta-training distribution the suites are designed around: the shipped rules' and the
# default config's image MLPs (width <= 256, depth <= 3) on digits / mnist5k_8 / mnist5k_14,
# horizons <= 1,000 (other recipes may add small CNNs, transformers and autoencoders).
META_TRAINING = ("image MLPs (width <= 256, depth <= 3) on digits, mnist5k_8 and mnist5k_14, "
                 "horizons <= 1,000 steps")

# Why each out_of_distribution task is outside it (by task id; see docs/evaluation.md).
OOD_REASONS: dict[str, str] = {}


def _ood(reason: str, spec: TaskSpec, num_steps: int) -> SuiteTask:
  item = SuiteTask(spec, num_steps)
  OOD_REASONS[item.id] = reason
  return item


def _out_of_distribution():
  mlp = lambda dataset, hidden, batch: TaskSpec("image_mlp", dataset=dataset, hidden=hidden,
                                                batch_size=batch)
  return [
      _ood("28x28 images (784 inputs), 3 layers", mlp("mnist5k", (256,) * 3, 64), 500),
      _ood("4 layers", mlp("mnist5k_14", (256,) * 4, 64), 1000),
      _ood("convolutions", TaskSpec("cnn", dataset="mnist5k_14", hidden=(8, 16, 32),
                                    batch_size=32), 300),
      _ood("new kind: convolutions with GroupNorm", TaskSpec(
          "cnn_norm", dataset="mnist5k_14", hidden=(8, 16), batch_size=32), 300),
      _ood("attention, text", TaskSpec("char_lm", dataset="pychars", seq_len=32, d_model=32,
                                       num_layers=2, num_heads=2, batch_size=16), 1000),
      _ood("wider transformer (d_model 128)", TaskSpec(
          "char_lm", dataset="pychars", seq_len=32, d_model=128, num_layers=1, num_heads=4,
          batch_size=8), 300),
      _ood("new kind: recurrent (GRU) with LayerNorm, text", TaskSpec(
          "rnn_lm", dataset="pychars", seq_len=32, d_model=64, num_layers=1, batch_size=16), 500),
      _ood("new kind and dataset: tabular, 2 classes", TaskSpec(
          "tabular_mlp", dataset="breast_cancer", hidden=(64, 64), batch_size=32), 500),
      _ood("new kind and dataset: tabular, 151 training examples", TaskSpec(
          "tabular_mlp", dataset="wine", hidden=(32,), activation="tanh", batch_size=16), 300),
      _ood("reconstruction loss", TaskSpec("autoencoder", dataset="mnist5k_14",
                                           hidden=(128, 32), batch_size=64), 1000),
      _ood("linear model, regression", TaskSpec("linreg", dim=32, batch_size=32), 1000),
      # 5-10x the meta-training horizons.
      _ood("10x horizon", TaskSpec("linreg", dim=32, batch_size=32), 10000),
      _ood("10x horizon, new kind", TaskSpec("tabular_mlp", dataset="breast_cancer",
                                            hidden=(32,), batch_size=32), 10000),
      _ood("5x horizon, reconstruction loss", TaskSpec(
          "autoencoder", dataset="mnist5k_14", hidden=(64,), batch_size=32), 5000),
      _ood("5x horizon", mlp("mnist5k_14", (64,) * 3, 32), 5000),
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



def designed_inside(suite: str, item: SuiteTask) -> tuple[bool | None, str]:
  """Whether ``item`` lies inside ``META_TRAINING`` by the suite's design, and why (None: the
  suite does not say). Used when a rule does not record the tasks it was meta-trained on."""
  if suite == "out_of_distribution":
    return False, OOD_REASONS.get(item.id, "out_of_distribution task")
  if suite == "in_distribution" and item.spec.kind == "image_mlp":
    return True, "sampled from the meta-training image-MLP family"
  if suite == "in_distribution":
    return None, "inside only for rules meta-trained on the CNN family"
  return None, f"suite {suite!r} is not designed to be inside or outside"

SUITES = _Suites({"tiny": _tiny, "demo": _demo, "in_distribution": _in_distribution,
                  "out_of_distribution": _out_of_distribution})


def get_suite(name: str) -> list[SuiteTask]:
  """The suite's ``(spec, num_steps)`` entries; ValueError naming the valid suites otherwise."""
  if name not in SUITES:
    raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}.")
  return SUITES[name]
