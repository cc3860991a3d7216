"""Hyperparameter optimisation with Optuna, asked and told in batches that train together.

    space = {"learning_rate": ("log", 1e-4, 1e-1), "weight_decay": ("log", 1e-6, 1e-2)}
    study = open_study("adam_digits", space, workdir="runs/s", sampler="tpe")
    target = OptimizerTarget(TaskSpec("image_mlp", dataset="digits", hidden=(32,)), "adamw", 300)
    optimize(study, space, target, n_trials=9, batch_size=3)

``optimize`` asks ``batch_size`` trials, lets the space suggest their parameters, and hands the
batch to a *target*: anything with ``num_reports`` and ``run(params_list, report) -> outcomes``.
The target reports intermediate losses through ``report(indices, step, losses) -> stop`` (which
feeds ``trial.report`` / ``trial.should_prune``) and returns one ``{"value", ...}`` per trial;
``optimize`` then tells Optuna. ``OptimizerTarget`` tunes a baseline optimizer on a task: trials
whose categorical choices agree train in one vmapped program (``BatchRun``); ``MetaConfigTarget``
(``metalearn.search.meta_target``) tunes the meta-training config. Other targets (architecture
search) plug in the same way.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

import metalearn.parallel as parallel
from metalearn.search import study as study_lib
from metalearn.search.batched import DEFAULTS, FAMILIES, BatchRun, optimizer_family
from metalearn.search.space import Space
from metalearn.tasks import TaskSpec, make_task

METRICS = ("test_loss", "train_loss", "mean_train_loss")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
_BIG = 1e30   # what a diverged run reports, so pruners and samplers see "bad" rather than NaN


class OptimizerTarget:
  """A baseline optimizer's hyperparameters on one task, scored by ``metric`` after ``num_steps``.

  Numeric parameters are hyperparameters of the family (``DEFAULTS``: learning_rate, warmup and
  decay as fractions of the run, weight_decay, b1, b2, momentum); a categorical ``optimizer``
  parameter picks the family per trial (trials with different ones train in separate programs).
  ``metric`` is ``test_loss`` (held out, default), ``train_loss`` (mean over the last chunk) or
  ``mean_train_loss`` (over the whole run: how fast it learns), or a tuple of them for a
  multi-objective study (one value each; Optuna prunes single-objective studies only).
  ``num_devices`` other than 1 shards each batch's members over that many devices (0: all).
  A run that diverges scores its initial loss (no progress) and is marked ``diverged``.
  """

  def __init__(self, task: TaskSpec | dict, optimizer: str = "adamw", num_steps: int = 300, *,
               seeds: Sequence[int] = (0,), num_reports: int = 4,
               metric: str | Sequence[str] = "test_loss",
               data_dir: str | None = None, num_devices: int = 1):
    if optimizer not in FAMILIES:
      raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {FAMILIES}.")
    metrics = (metric,) if isinstance(metric, str) else tuple(metric)
    if not metrics or set(metrics) - set(METRICS):
      raise ValueError(f"metric must be one of {METRICS} or a tuple of them, got {metric!r}.")
    if not seeds:
      raise ValueError("a target needs at least one seed.")
    self.spec = task if isinstance(task, TaskSpec) else TaskSpec.from_dict(dict(task))
    self.optimizer, self.num_steps, self.seeds = optimizer, int(num_steps), tuple(seeds)
    self.num_reports, self.data_dir = int(num_reports), data_dir
    self.metric = metrics[0] if isinstance(metric, str) else metrics
    self.num_devices = int(num_devices)   # members sharded over this many devices (0: all)

  def check_space(self, space: Space) -> None:
    unknown = set(space.names) - set(DEFAULTS) - {"optimizer"}
    if unknown:
      raise ValueError(f"search space names {sorted(unknown)}, which {type(self).__name__} cannot "
                       f"set; it tunes {sorted(DEFAULTS)} and a categorical 'optimizer'.")
    choices = getattr(space.distributions.get("optimizer"), "choices", ())
    if set(choices) - set(FAMILIES):
      raise ValueError(f"search space: 'optimizer' choices {sorted(set(choices) - set(FAMILIES))} "
                       f"are not optimizers; choose among {FAMILIES}.")

  def _run_for(self, optimizer: str) -> BatchRun:
    return _batch_run(self.spec, optimizer, self.num_steps, self.num_reports, self.data_dir,
                      self.num_devices)

  def run(self, params: list[dict], report) -> list[dict]:
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
      bad = {k: v for k, v in p.items() if k != "optimizer" and not isinstance(v, (int, float))}
      if bad:
        raise ValueError(f"hyperparameters must be numbers (only 'optimizer' is a choice): {bad}.")
      groups.setdefault((p.get("optimizer", self.optimizer), tuple(sorted(p))), []).append(i)
    outcomes: list[dict] = [{}] * len(params)
    for (optimizer, names), idx in groups.items():
      names = [n for n in names if n != "optimizer"]
      hp = {n: [float(params[i][n]) for i in idx] for n in names}
      out = self._run_for(optimizer)(
          hp, self.seeds, on_chunk=lambda step, losses, alive, idx=idx: _stop(
              report, idx, step, losses, alive))
      for j, i in enumerate(idx):
        init = float(out["init_loss"][j])
        values = [float(out[m][j]) for m in _as_tuple(self.metric)]
        diverged = not np.all(np.isfinite(values)) and out["steps"][j] == self.num_steps
        values = [init if diverged else v for v in values]
        outcomes[i] = {"value": values[0] if isinstance(self.metric, str) else values,
                       "diverged": diverged,
                       "steps": int(out["steps"][j]), "init_loss": init,
                       "train_loss": float(out["train_loss"][j])}
    return outcomes


@functools.lru_cache(maxsize=16)
def _batch_run(spec: TaskSpec, optimizer: str, num_steps: int, num_chunks: int,
               data_dir: str | None, num_devices: int) -> BatchRun:
  """One BatchRun (and so one set of compiled programs) per setting, shared by studies."""
  task = make_task(spec, data_dir=data_dir)
  mesh = parallel.make_mesh(num_devices or None) if num_devices != 1 else None
  return BatchRun(task, optimizer_family(optimizer, num_steps), num_steps, num_chunks=num_chunks,
                  mesh=mesh)


def _as_tuple(metric):
  return (metric,) if isinstance(metric, str) else tuple(metric)


def _stop(report, idx, step, losses, alive) -> np.ndarray:
  live = np.flatnonzero(alive)
  vals = np.where(np.isfinite(losses[live]), losses[live], _BIG)
  stop = np.zeros(len(idx), bool)
  stop[live] = report([idx[j] for j in live], step, vals)
  return stop


def optimize(study: optuna.Study, space, target, n_trials: int, *, batch_size: int = 8,
             callback: Callable[[optuna.Study, list], None] | None = None) -> int:
  """Runs trials until the study holds ``n_trials`` complete, pruned or running ones.

  Each round asks up to ``batch_size`` trials (fewer when another worker sharing the study has
  taken the rest of the budget) and trains them together. Returns the number of trials run here.
  """
  space = Space(space)
  if hasattr(target, "check_space"):
    target.check_space(space)
  if n_trials < 1 or batch_size < 1:
    raise ValueError(f"need n_trials >= 1 and batch_size >= 1, got {n_trials}, {batch_size}.")
  ran = 0
  while True:
    trials = []
    for _ in range(batch_size):
      if _count(study) >= n_trials:
        break
      with study_lib.quiet():
        trial = study.ask()
      study_lib.mark_worker(trial)
      if _count(study, before=trial.number) >= n_trials:  # a worker sharing the study was first
        trial.set_user_attr("surplus", True)
        study.tell(trial, state=TrialState.FAIL)
        break
      trials.append(trial)
    if not trials:
      if _count(study) >= n_trials:
        return ran
      continue
    pruned: set[int] = set()
    try:
      params = [space(t) for t in trials]
      outcomes = target.run(params, lambda idx, step, values: _report(study, trials, idx, step,
                                                                      values, pruned))
    except BaseException:
      for t in trials:  # a crash (or Ctrl-C) fails this batch; completed trials stay as they are
        study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
      raise
    stopped = False
    for i, (t, o) in enumerate(zip(trials, outcomes)):
      for k, v in o.items():
        if k != "value":
          t.set_user_attr(k, v)
      stopped = _tell(study, t, None if i in pruned else o["value"]) or stopped
    ran += len(trials)
    if callback is not None:
      callback(study, trials)
    if stopped:
      return ran


def _tell(study, trial, value) -> bool:
  """Tells a value (``None``: pruned); True if the sampler asks to stop (a finished grid)."""
  try:
    study.tell(trial, value, state=TrialState.PRUNED if value is None else None,
               skip_if_finished=True)
  except RuntimeError as e:  # GridSampler calls study.stop(), meant for study.optimize only;
    if "Study.stop" not in str(e):  # the trial is stored before it does
      raise
    return True
  return False


def _count(study, before: int | None = None) -> int:
  return sum(before is None or t.number < before
             for t in study.get_trials(deepcopy=False, states=COUNTED))


def _report(study, trials, idx, step, values, pruned: set) -> np.ndarray:
  study_lib.heartbeat(study, trials)
  if len(study.directions) > 1:   # Optuna records and prunes single-objective studies only
    return np.zeros(len(idx), bool)
  stop = []
  for i, v in zip(idx, values):
    trials[i].report(float(v), int(step))
    stop.append(trials[i].should_prune())
    if stop[-1]:
      pruned.add(i)
  return np.asarray(stop, bool)
