"""Architecture search spaces written in Python: families of categorical choices -> ``TaskSpec``.

    space = ArchSpace([mlp_family(depths=(1, 2, 3), widths=(32, 64, 128)),
                       cnn_family(channels=((8,), (8, 16)), kernels=(3, 5))])
    arch = space.sample(rng)     # {"family": "mlp", "depth": 2, "width": 64, "activation": ...}
    spec = space.to_spec(arch, dataset="mnist5k_14", batch_size=64)   # a metalearn TaskSpec
    child = space.mutate(arch, rng)   # one choice changed (or, rarely, another family)

An architecture is a small JSON-able dict: its family's name and one value per choice. A family
maps it to a ``TaskSpec`` (``image_mlp``, ``cnn``/``cnn_norm``, ``char_lm``), so every candidate is
trained by the one inner loop of ``metalearn.tasks``. Families are plain Python: write your own with
``ArchFamily(name, choices, to_spec)``. ``space.suggest(trial)`` is the same space in Optuna's API
(a conditional space: the family first, then its choices), for TPE.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Callable, Sequence

import numpy as np

from metalearn.tasks.base import TaskSpec


@dataclasses.dataclass(frozen=True)
class ArchFamily:
  """``choices``: name -> list of values; ``to_spec(arch, dataset, batch_size) -> TaskSpec``."""

  name: str
  choices: dict
  to_spec: Callable[[dict, str, int], TaskSpec]

  def __post_init__(self):
    if not self.choices:
      raise ValueError(f"architecture family {self.name!r} has no choices.")
    for k, v in self.choices.items():
      if not isinstance(v, (list, tuple)) or not v:
        raise ValueError(f"architecture family {self.name!r}: choice {k!r} needs a non-empty list "
                         f"of values, got {v!r}.")
      if k == "family":
        raise ValueError(f"architecture family {self.name!r}: 'family' is a reserved name.")

  @property
  def size(self) -> int:
    return int(np.prod([len(v) for v in self.choices.values()]))

  def enumerate(self):
    keys = list(self.choices)
    for values in itertools.product(*(self.choices[k] for k in keys)):
      yield {"family": self.name, **dict(zip(keys, values))}


def _plain(v):
  return list(v) if isinstance(v, tuple) else v


def arch_key(arch: dict) -> str:
  """A canonical string for an architecture (dict keys sorted, tuples as lists)."""
  return json.dumps({k: _plain(v) for k, v in arch.items()}, sort_keys=True)


class ArchSpace:
  """A validated union of ``ArchFamily`` s (see module docstring)."""

  def __init__(self, families: Sequence[ArchFamily]):
    families = list(families)
    if not families:
      raise ValueError("architecture search space is empty: give at least one family (e.g. "
                       "metalearn.search.nas_space.mlp_family()).")
    names = [f.name for f in families]
    if len(set(names)) != len(names):
      raise ValueError(f"architecture search space: family names repeat: {names}.")
    self.families = {f.name: f for f in families}

  @property
  def size(self) -> int:
    return sum(f.size for f in self.families.values())

  def enumerate(self) -> list[dict]:
    return [a for f in self.families.values() for a in f.enumerate()]

  def check(self, arch: dict) -> dict:
    fam = self.families.get(arch.get("family"))
    if fam is None:
      raise ValueError(f"architecture {arch} names no family of this space "
                       f"({sorted(self.families)}).")
    for k, values in fam.choices.items():
      if k not in arch or _plain(arch[k]) not in [_plain(v) for v in values]:
        raise ValueError(f"architecture {arch}: {k!r} must be one of {list(values)}.")
    return arch

  def to_spec(self, arch: dict, dataset: str, batch_size: int) -> TaskSpec:
    self.check(arch)
    return self.families[arch["family"]].to_spec(arch, dataset, batch_size)

  def sample(self, rng: np.random.Generator) -> dict:
    """Uniform over architectures (a family is drawn in proportion to its size)."""
    fams = list(self.families.values())
    sizes = np.array([f.size for f in fams], float)
    fam = fams[rng.choice(len(fams), p=sizes / sizes.sum())]
    return {"family": fam.name, **{k: v[rng.integers(len(v))] for k, v in fam.choices.items()}}

  def mutate(self, arch: dict, rng: np.random.Generator) -> dict:
    """One choice changed to another value; another family (a fresh sample) with probability
    1/(choices + 1) when the space has several, or when the family has nothing left to change."""
    fam = self.families[arch["family"]]
    free = [k for k, v in fam.choices.items() if len(v) > 1]
    if len(self.families) > 1 and (not free or rng.random() < 1.0 / (len(free) + 1)):
      others = [f for f in self.families if f != fam.name]
      other = self.families[others[rng.integers(len(others))]]
      return {"family": other.name, **{k: v[rng.integers(len(v))]
                                       for k, v in other.choices.items()}}
    if not free:
      return dict(arch)
    k = free[rng.integers(len(free))]
    values = [v for v in fam.choices[k] if _plain(v) != _plain(arch[k])]
    return {**arch, k: values[rng.integers(len(values))]}

  def suggest(self, trial) -> dict:
    """The same space in Optuna's API: ``family``, then ``FAMILY.CHOICE`` for each choice."""
    name = trial.suggest_categorical("family", list(self.families))
    fam = self.families[name]
    arch = {"family": name}
    for k, values in fam.choices.items():
      idx = trial.suggest_categorical(f"{name}.{k}", list(range(len(values))))
      arch[k] = values[idx]
    return arch

  def trial_params(self, arch: dict) -> dict:
    """``suggest``'s parameters (as Optuna stores them) for ``arch``: to tell TPE of it."""
    fam = self.families[arch["family"]]
    params = {"family": arch["family"]}
    for k, values in fam.choices.items():
      params[f"{fam.name}.{k}"] = [_plain(v) for v in values].index(_plain(arch[k]))
    return params

  def distributions(self, arch: dict) -> dict:
    from optuna.distributions import CategoricalDistribution
    fam = self.families[arch["family"]]
    dists = {"family": CategoricalDistribution(list(self.families))}
    for k, values in fam.choices.items():
      dists[f"{fam.name}.{k}"] = CategoricalDistribution(list(range(len(values))))
    return dists


# -- built-in families -----------------------------------------------------------------------------


def mlp_family(depths=(1, 2, 3), widths=(32, 64, 128, 256), activations=("relu", "tanh", "gelu"),
               name: str = "mlp") -> ArchFamily:
  """Image MLPs: ``depth`` hidden layers of ``width`` units, one activation."""
  def to_spec(a, dataset, batch_size):
    return TaskSpec(kind="image_mlp", dataset=dataset, hidden=(a["width"],) * a["depth"],
                    activation=a["activation"], batch_size=batch_size)
  return ArchFamily(name, {"depth": list(depths), "width": list(widths),
                           "activation": list(activations)}, to_spec)


def cnn_family(channels=((8,), (8, 16), (16, 32)), kernels=(3, 5), norms=("none", "group"),
               activations=("relu",), name: str = "cnn") -> ArchFamily:
  """CNNs: conv ``channels`` per layer, square ``kernel``, ``norm`` none (kind ``cnn``) or
  GroupNorm (kind ``cnn_norm``)."""
  def to_spec(a, dataset, batch_size):
    return TaskSpec(kind="cnn" if a["norm"] == "none" else "cnn_norm", dataset=dataset,
                    hidden=tuple(a["channels"]), kernel_size=a["kernel"],
                    activation=a["activation"], batch_size=batch_size)
  for n in norms:
    if n not in ("none", "group"):
      raise ValueError(f"cnn_family: norm {n!r} must be 'none' or 'group'.")
  return ArchFamily(name, {"channels": [tuple(c) for c in channels], "kernel": list(kernels),
                           "norm": list(norms), "activation": list(activations)}, to_spec)


def transformer_family(depths=(1, 2), widths=(32, 64), heads=(1, 2, 4), seq_len: int = 32,
                       name: str = "transformer") -> ArchFamily:
  """Character transformers (kind ``char_lm``): ``depth`` blocks of width ``width``, ``heads``
  attention heads; the dataset is a text corpus (default ``pychars``)."""
  def to_spec(a, dataset, batch_size):
    if a["width"] % a["heads"]:
      raise ValueError(f"transformer width {a['width']} is not divisible by {a['heads']} heads.")
    return TaskSpec(kind="char_lm", dataset=dataset, seq_len=seq_len, d_model=a["width"],
                    num_layers=a["depth"], num_heads=a["heads"], batch_size=batch_size)
  return ArchFamily(name, {"depth": list(depths), "width": list(widths), "heads": list(heads)},
                    to_spec)


FAMILIES = {"mlp": mlp_family, "cnn": cnn_family, "transformer": transformer_family}


def make_space(spec) -> ArchSpace:
  """An ``ArchSpace`` from itself, a list of families, or ``{family: kwargs}`` of the built-ins
  (``{"mlp": {"widths": [32, 64]}, "cnn": {}}``)."""
  if isinstance(spec, ArchSpace):
    return spec
  if isinstance(spec, dict):
    unknown = set(spec) - set(FAMILIES)
    if unknown:
      raise ValueError(f"architecture search space: unknown families {sorted(unknown)}; built-in "
                       f"ones are {sorted(FAMILIES)} (or pass ArchFamily objects).")
    return ArchSpace([FAMILIES[k](**(v or {})) for k, v in spec.items()])
  if isinstance(spec, (list, tuple)):
    return ArchSpace(spec)
  raise ValueError(f"architecture search space must be an ArchSpace, a list of ArchFamily or a "
                   f"dict of built-in families, got {type(spec).__name__}.")
