"""Architecture search: strategies with a tiny ask/tell interface, and the loop that runs one.

    space = make_space({"mlp": {}, "cnn": {}})
    strategy = make_strategy("evolution", space, seed=0)     # random | evolution | tpe
    trainer = Trainer.learned("pretrained:default", num_steps=300)
    history = search(space, strategy, trainer, budget=40, dataset="mnist5k_14", batch_size=64)

Every strategy is one small class: ``ask() -> arch`` and ``tell(arch, fitness)`` (higher is better;
fitness is validation accuracy). ``tell`` accepts architectures the strategy never asked for, which
is how a search resumes: the loop tells it the recorded history first, then asks on.

* ``RandomSearch``: uniform samples, preferring ones not yet tried.
* ``RegularizedEvolution`` (Real et al. 2019, "aging evolution"): a queue of the last
  ``population`` results; each child mutates the best of ``sample`` members drawn at random, and
  the oldest member dies.
* ``TPESearch``: Optuna's TPE sampler over the conditional space (``ArchSpace.suggest``).

``search`` trains each new candidate once (an architecture asked again is answered from the
history, at no cost) until ``budget`` candidates are trained or the space is exhausted; it calls
``on_result(record)`` after each, with the running totals: ``cum_steps`` (inner steps spent) and
``best_val_accuracy``.
"""
from __future__ import annotations

import collections
import time
from typing import Callable

import numpy as np

from metalearn.search.nas_space import ArchSpace, arch_key

STRATEGIES = ("random", "evolution", "tpe")


class RandomSearch:

  def __init__(self, space: ArchSpace, *, seed: int = 0):
    self.space, self.rng, self.seen = space, np.random.default_rng(seed), set()

  def ask(self) -> dict:
    for _ in range(100):
      arch = self.space.sample(self.rng)
      if arch_key(arch) not in self.seen:
        break
    self.seen.add(arch_key(arch))
    return arch

  def tell(self, arch: dict, fitness: float) -> None:
    self.seen.add(arch_key(arch))


class RegularizedEvolution:
  """Aging evolution: ``population`` members, tournaments of ``sample`` (module docstring)."""

  def __init__(self, space: ArchSpace, *, population: int = 16, sample: int = 4, seed: int = 0):
    if population < 2 or not 1 <= sample <= population:
      raise ValueError(f"evolution needs population >= 2 and 1 <= sample <= population, got "
                       f"{population}, {sample}.")
    self.space, self.sample_size = space, sample
    self.rng = np.random.default_rng(seed)
    self.population = collections.deque(maxlen=population)   # (arch, fitness), oldest first
    self.random = RandomSearch(space, seed=seed + 1)

  def ask(self) -> dict:
    if len(self.population) < self.population.maxlen:
      return self.random.ask()
    idx = self.rng.choice(len(self.population), self.sample_size, replace=False)
    parent = max((self.population[i] for i in idx), key=lambda m: m[1])[0]
    return self.space.mutate(parent, self.rng)

  def tell(self, arch: dict, fitness: float) -> None:
    self.random.tell(arch, fitness)
    self.population.append((dict(arch), float(fitness)))


class TPESearch:
  """Optuna's TPE over ``space.suggest``; ``storage`` (a URL) keeps the study in a database."""

  def __init__(self, space: ArchSpace, *, seed: int = 0, n_startup_trials: int = 10,
               storage: str | None = None, study_name: str = "nas"):
    import warnings
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    self.space, self._optuna = space, optuna
    # multivariate + group is how TPE handles a conditional space; Optuna marks it experimental.
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
      sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                           n_startup_trials=n_startup_trials)
    self.study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage,
                                     study_name=study_name, load_if_exists=True)
    self.pending = {}   # arch key -> trial asked and not yet told

  def ask(self) -> dict:
    trial = self.study.ask()
    arch = self.space.suggest(trial)
    self.pending.setdefault(arch_key(arch), []).append(trial)
    return arch

  def tell(self, arch: dict, fitness: float) -> None:
    waiting = self.pending.get(arch_key(arch))
    if waiting:
      self.study.tell(waiting.pop(0), float(fitness))
      return
    self.study.add_trial(self._optuna.trial.create_trial(
        params=self.space.trial_params(arch), distributions=self.space.distributions(arch),
        value=float(fitness)))


def make_strategy(name: str, space: ArchSpace, *, seed: int = 0, **kwargs):
  """``random``, ``evolution`` or ``tpe``; ``kwargs`` go to the class."""
  classes = {"random": RandomSearch, "evolution": RegularizedEvolution, "tpe": TPESearch}
  if name not in classes:
    raise ValueError(f"unknown search strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")
  return classes[name](space, seed=seed, **kwargs)


def search(space: ArchSpace, strategy, trainer: Callable, budget: int, *, dataset: str,
           batch_size: int, history: list[dict] | None = None,
           on_result: Callable[[dict], None] | None = None, max_asks: int | None = None
           ) -> list[dict]:
  """Runs ``strategy`` until ``budget`` candidates are trained (module docstring).

  ``history`` holds records of an earlier, interrupted run of the same search: they are told to
  the strategy and not trained again. Returns the full history, in training order. Each record:
  ``{"index", "arch", "val_accuracy", "test_accuracy", "num_params", "steps", "cum_steps",
  "best_val_accuracy", "seconds", ...}``.
  """
  if budget < 1:
    raise ValueError(f"architecture search budget must be >= 1 candidate, got {budget}.")
  history = list(history or [])
  done = {arch_key(r["arch"]): r for r in history}
  for r in history:
    strategy.tell(r["arch"], r["val_accuracy"])
  target = min(budget, space.size)
  max_asks = max_asks or 50 * budget
  asks = 0
  while len(history) < target and asks < max_asks:
    arch = strategy.ask()
    asks += 1
    key = arch_key(arch)
    if key in done:   # asked again: the strategy learns its known fitness, nothing is trained
      strategy.tell(arch, done[key]["val_accuracy"])
      continue
    start = time.time()
    result = trainer(space.to_spec(arch, dataset, batch_size))
    prev = history[-1] if history else {"cum_steps": 0, "best_val_accuracy": -np.inf}
    record = {"index": len(history), "arch": arch, **result,
              "cum_steps": prev["cum_steps"] + result["steps"],
              "best_val_accuracy": max(prev["best_val_accuracy"], result["val_accuracy"]),
              "seconds": round(time.time() - start, 3)}
    history.append(record)
    done[key] = record
    strategy.tell(arch, record["val_accuracy"])
    if on_result is not None:
      on_result(record)
  return history


def best(history: list[dict]) -> dict:
  if not history:
    raise ValueError("the search trained no candidate.")
  return max(history, key=lambda r: (r["val_accuracy"], -r["num_params"]))
