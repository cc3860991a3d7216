"""Search spaces written in Python: a function of an Optuna trial, or a small declarative dict.

    def space(trial):                                   # Optuna's own API; may be conditional
      return {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True),
              "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)}

    space = {"learning_rate": ("log", 1e-4, 1e-1),     # the same space, declared
             "weight_decay": ("log", 1e-6, 1e-2),
             "warmup": ("float", 0.0, 0.2),             # linear: ("float", lo, hi[, step])
             "hidden": ("int", 16, 128),                # ("int", lo, hi[, step]), ("logint", lo, hi)
             "schedule": ["constant", "cosine"]}        # categorical: a list of choices

``Space(spec)`` validates either form up front (an empty space, a bad range or an unknown kind is
a ``ValueError`` naming the parameter) and gives a ``signature``: the JSON of every parameter's
distribution, stored with a study so that a study is never continued with another space.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution, distribution_to_json)

KINDS = ("float", "log", "int", "logint")
_DRY_RUNS = 8   # samples of a function space, so conditional branches show their parameters


def _declared(name: str, entry) -> BaseDistribution:
  if isinstance(entry, list):
    if not entry:
      raise ValueError(f"search space: {name!r} has an empty list of choices.")
    return CategoricalDistribution(entry)
  if not (isinstance(entry, tuple) and len(entry) in (3, 4) and entry[0] in KINDS):
    raise ValueError(f"search space: {name!r} must be a list of choices or a tuple "
                     f"(kind, low, high[, step]) with kind in {KINDS}; got {entry!r}.")
  kind, low, high, *step = entry
  if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high, *step)):
    raise ValueError(f"search space: {name!r} bounds must be numbers, got {entry!r}.")
  if low > high or (low == high and kind in ("log", "logint")):
    raise ValueError(f"search space: {name!r} has low {low} > high {high}.")
  if kind in ("log", "logint") and low <= 0:
    raise ValueError(f"search space: {name!r} is log-scaled, so low must be > 0 (got {low}).")
  if step and step[0] <= 0:
    raise ValueError(f"search space: {name!r} has step {step[0]} <= 0.")
  if kind in ("float", "log"):
    return FloatDistribution(float(low), float(high), log=kind == "log",
                             step=float(step[0]) if step else None)
  if int(low) != low or int(high) != high:
    raise ValueError(f"search space: {name!r} is an int range but has bounds {low}, {high}.")
  return IntDistribution(int(low), int(high), log=kind == "logint",
                         step=int(step[0]) if step else 1)


class Space:
  """A validated search space (see module docstring): ``Space(fn_or_dict)(trial) -> params``."""

  def __init__(self, spec: Callable[[Any], dict] | dict | "Space"):
    if isinstance(spec, Space):
      spec = spec.spec
    self.spec = spec
    if isinstance(spec, dict):
      if not spec:
        raise ValueError("search space is empty: declare at least one parameter.")
      for name in spec:
        if not isinstance(name, str) or not name:
          raise ValueError(f"search space: parameter names must be non-empty strings, got {name!r}.")
      self.distributions = {n: _declared(n, e) for n, e in spec.items()}
    elif callable(spec):
      self.distributions = self._dry_run(spec)
    else:
      raise ValueError(f"search space must be a function space(trial) -> dict or a dict, got "
                       f"{type(spec).__name__}.")

  @staticmethod
  def _dry_run(fn) -> dict[str, BaseDistribution]:
    """The distributions ``fn`` suggests, from a few samples of a throwaway in-memory study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    found: dict[str, BaseDistribution] = {}
    for _ in range(_DRY_RUNS):
      trial = study.ask()
      try:
        params = fn(trial)
      except Exception as e:  # Optuna's own checks (low > high, log with low <= 0, ...)
        raise ValueError(f"search space {getattr(fn, '__name__', fn)!r} is invalid: "
                         f"{type(e).__name__}: {e}") from e
      if not isinstance(params, dict):
        raise ValueError(f"search space function must return a dict of parameters, got "
                         f"{type(params).__name__}.")
      found.update(trial.distributions)
      study.tell(trial, 0.0)
    if not found:
      raise ValueError("search space is empty: the function suggests no parameter (call "
                       "trial.suggest_float / suggest_int / suggest_categorical).")
    return found

  def __call__(self, trial) -> dict:
    if isinstance(self.spec, dict):
      return {n: _suggest(trial, n, d) for n, d in self.distributions.items()}
    return self.spec(trial)

  @property
  def names(self) -> list[str]:
    return sorted(self.distributions)

  @property
  def signature(self) -> str:
    return json.dumps({n: json.loads(distribution_to_json(d))
                       for n, d in sorted(self.distributions.items())}, sort_keys=True)

  def grid(self, points: int = 5) -> dict[str, list]:
    """A grid for ``GridSampler``: choices as they are, ranges as ``points`` (log-)even values."""
    import numpy as np
    out = {}
    for n, d in sorted(self.distributions.items()):
      if isinstance(d, CategoricalDistribution):
        out[n] = list(d.choices)
      elif isinstance(d, IntDistribution):
        vals = (np.geomspace if d.log else np.linspace)(d.low, d.high, points)
        out[n] = sorted({int(round(v)) for v in vals})
      else:
        vals = (np.geomspace if d.log else np.linspace)(d.low, d.high, points)
        out[n] = [float(v) for v in vals]
    return out


def _suggest(trial, name: str, d: BaseDistribution):
  if isinstance(d, CategoricalDistribution):
    return trial.suggest_categorical(name, d.choices)
  if isinstance(d, IntDistribution):
    return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
  return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
