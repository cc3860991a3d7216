"""The hand-designed optimizers a learned rule is compared with.

Each tuned baseline is a family ``make_tx(lr, num_steps)`` and the learning-rate grid it is tuned
over, per task, on the final training loss:

* ``adam``, ``adamw`` (weight decay 1e-4), ``sgdm`` (SGD, momentum 0.9): constant learning rates;
* ``adamw_cosine``: AdamW (weight decay 1e-4) with a linear warmup over the first 5% of steps to
  ``lr``, then a cosine decay to 0 at the horizon -- the schedule practitioners use.

``DEFAULT`` is the untuned default, Adam at 1e-3: one point of Adam's grid, so it costs no runs.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np
import optax

WARMUP_FRACTION = 0.05
WEIGHT_DECAY = 1e-4


@dataclasses.dataclass(frozen=True)
class Baseline:
  """A hand-designed optimizer family: ``make_tx(lr, num_steps)`` and the learning rates it is
  tuned over (``lr`` is traced: the grid is one compiled program)."""

  name: str
  label: str
  make_tx: Callable[[jax.Array, int], optax.GradientTransformation]
  lrs: tuple[float, ...]


def half_decades(lo: float, hi: float) -> tuple[float, ...]:
  """10**lo ... 10**hi in steps of 10**0.5 (1e-4, 3.2e-4, 1e-3, ...)."""
  return tuple(float(x) for x in np.logspace(lo, hi, int(round(2 * (hi - lo))) + 1))


def warmup_cosine(lr, num_steps: int):
  """Linear warmup from 0 to ``lr`` over 5% of ``num_steps``, then cosine decay to 0."""
  warmup = max(1, int(round(WARMUP_FRACTION * num_steps)))
  # The shape at peak 1, scaled by lr: optax's schedule branches on a peak value (traced here).
  shape = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, max(num_steps, warmup + 1), 0.0)
  return lambda step: lr * shape(step)


TUNED = (
    Baseline("adam", "Adam", lambda lr, n: optax.adam(lr), half_decades(-4, -1)),
    Baseline("adamw", "AdamW (wd 1e-4)",
             lambda lr, n: optax.adamw(lr, weight_decay=WEIGHT_DECAY), half_decades(-4, -1)),
    Baseline("adamw_cosine", "AdamW + warmup-cosine",
             lambda lr, n: optax.adamw(warmup_cosine(lr, n), weight_decay=WEIGHT_DECAY),
             half_decades(-4, -1)),
    Baseline("sgdm", "SGD+momentum 0.9", lambda lr, n: optax.sgd(lr, momentum=0.9),
             half_decades(-3, 1)),
)
BASELINES = tuple(b.name for b in TUNED)   # names of the tuned baselines
PRIMARY = "adam"                           # the one the verdict and the headline numbers use


@dataclasses.dataclass(frozen=True)
class Default:
  """An untuned configuration, read from one learning rate of a tuned family's grid."""

  name: str
  label: str
  family: str
  lr: float


DEFAULT = Default("default", "Adam 1e-3 (untuned default)", "adam", 1e-3)
LABELS = {**{b.name: b.label for b in TUNED}, DEFAULT.name: DEFAULT.label, "rule": "learned rule"}


def lr_index(lrs, lr: float) -> int:
  """Index of ``lr`` in a grid (to 0.1% relative); ValueError if it is not a grid point."""
  hits = [i for i, x in enumerate(lrs) if abs(x - lr) <= 1e-3 * lr]
  if not hits:
    raise ValueError(f"learning rate {lr} is not on the grid {list(lrs)}.")
  return hits[0]


