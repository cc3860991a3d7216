"""A search from a Python config file: what ``metalearn search`` runs.

    config = load_config("experiments/search_adam_digits.py")     # get_config() -> dict
    run_search(config, "runs/search", sampler="tpe", trials=9)   # study.db, results.json, report

A config is a dict (or ConfigDict) with the keys of ``DEFAULTS``; ``space`` is a declarative dict or
a function ``space(trial) -> dict``. Every key is checked, and the space, sampler, pruner and
storage are validated, before anything is written to the workdir.
"""
from __future__ import annotations

import json
import os

import numpy as np
from optuna.trial import TrialState

from metalearn.files import atomic_write, run_get_config
from metalearn.search import study as study_lib
from metalearn.search.hpo import OptimizerTarget, optimize
from metalearn.search.space import Space

RESULTS = "results.json"
DEFAULTS = {
    "name": "search",            # the study's name in its storage
    "mode": "hpo",               # hpo (Optuna) | pbt (population-based training)
    "target": "optimizer",       # optimizer (a baseline on a task) | meta (the meta-training config)
    "task": None,                # TaskSpec dict (optimizer target, pbt)
    "optimizer": "adamw",        # adamw | adam | sgdm | lion
    "num_steps": 300,
    "seeds": (0,),
    "metric": "test_loss",       # or a tuple, e.g. ("test_loss", "mean_train_loss"): Pareto front
    "space": None,               # dict or function(trial) -> dict
    "sampler": "tpe",            # tpe | cmaes | random | grid
    "sampler_kwargs": {},
    "grid": None,                # grid sampler: {name: [values]}; default space.grid(grid_points)
    "pruner": "median",          # none | median | hyperband
    "num_reports": 4,            # intermediate reports (chunks of training) per trial
    "trials": 20,
    "batch_size": 8,             # trials asked and trained together
    "num_devices": 1,            # shard a batch's members over this many devices (0: all)
    "seed": 0,
    "direction": "minimize",     # or one per metric
    "meta_config": None,         # meta target: the base meta-training config file
    "meta_overrides": {},        # meta target: fixed keys set on every trial's config
    "pbt": {},                   # pbt mode: population, num_intervals, ... (see metalearn.search.pbt)
}


def load_config(path: str) -> dict:
  return check_config(run_get_config(path, "search config"))


def check_config(config) -> dict:
  config = dict(config.to_dict() if hasattr(config, "to_dict") else config)
  unknown = set(config) - set(DEFAULTS)
  if unknown:
    raise ValueError(f"search config: unknown keys {sorted(unknown)}; valid: {sorted(DEFAULTS)}.")
  config = {**DEFAULTS, **config}
  if config["mode"] not in ("hpo", "pbt"):
    raise ValueError(f"search config: mode must be hpo or pbt, got {config['mode']!r}.")
  if config["target"] not in ("optimizer", "meta"):
    raise ValueError(f"search config: target must be optimizer or meta, got {config['target']!r}.")
  if config["space"] is None:
    raise ValueError("search config: no search space (set 'space').")
  metrics = (config["metric"],) if isinstance(config["metric"], str) else tuple(config["metric"])
  if isinstance(config["direction"], str):
    config["direction"] = config["direction"] if len(metrics) == 1 else [config["direction"]] * len(
        metrics)
  elif len(config["direction"]) != len(metrics):
    raise ValueError(f"search config: {len(config['direction'])} directions for {len(metrics)} "
                     "metrics.")
  if len(metrics) > 1 and config["pruner"] != "none":
    raise ValueError("search config: Optuna prunes single-objective studies only; set pruner "
                     "'none' with several metrics.")
  for key in ("trials", "batch_size", "num_steps", "num_reports"):
    if not isinstance(config[key], int) or isinstance(config[key], bool) or config[key] < 1:
      raise ValueError(f"search config: {key} must be an integer >= 1, got {config[key]!r}.")
  return config


def make_target(config, workdir: str | None = None):
  if config["target"] == "meta":
    from metalearn.search.meta_target import MetaConfigTarget
    return MetaConfigTarget(config["meta_config"], workdir=workdir,
                            overrides=config["meta_overrides"])
  if not config["task"]:
    raise ValueError("search config: the optimizer target needs a 'task' (a TaskSpec dict).")
  return OptimizerTarget(config["task"], config["optimizer"], config["num_steps"],
                         seeds=config["seeds"], num_reports=config["num_reports"],
                         metric=config["metric"], num_devices=config["num_devices"])


def run_search(config, workdir: str, *, storage: str | None = None, sampler: str | None = None,
               trials: int | None = None, report: bool = True) -> dict:
  """Creates or resumes the config's study and runs its trials; writes results and a report."""
  config = dict(check_config(config))
  if sampler is not None:
    config["sampler"] = sampler
  if trials is not None:
    config["trials"] = trials
  config = check_config(config)
  if config["mode"] == "pbt":
    from metalearn.search.pbt_run import run_pbt_search
    return run_pbt_search(config, workdir, report=report)
  space = Space(config["space"])
  study_lib.check_sampler(config["sampler"])
  study_lib.check_pruner(config["pruner"])
  target = make_target(config, workdir)
  if hasattr(target, "check_space"):
    target.check_space(space)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f"workdir {workdir} is a file; pass a directory.")
  if storage is not None:
    study_lib.open_storage(storage)   # unreachable: fail before the workdir is made
  study = study_lib.open_study(
      config["name"], space, workdir=workdir, storage=storage, sampler=config["sampler"],
      pruner=config["pruner"], direction=config["direction"], seed=config["seed"],
      n_trials=config["trials"], num_reports=getattr(target, "num_reports", 1),
      grid=config["grid"], sampler_kwargs=config["sampler_kwargs"])
  results_path = os.path.join(workdir, RESULTS)
  write = lambda study, _: atomic_write(results_path, json.dumps(summarize(study, config,
                                                                           storage), indent=2))
  optimize(study, space, target, config["trials"], batch_size=config["batch_size"],
           callback=write)
  summary = summarize(study, config, storage)
  atomic_write(results_path, json.dumps(summary, indent=2))
  if report:
    from metalearn.search.report import write_study_report
    metric = config["metric"]
    write_study_report(study, workdir, names=[metric] if isinstance(metric, str) else list(metric))
  return summary


def _num(x):
  return float(x) if x is not None and np.isfinite(x) else None


def summarize(study, config: dict, storage: str | None) -> dict:
  trials = study.get_trials(deepcopy=False)
  multi = len(study.directions) > 1
  done = [t for t in trials if t.state == TrialState.COMPLETE]
  best = None if multi or not done else study.best_trial
  value = lambda t: (None if t.values is None else [_num(v) for v in t.values] if multi
                     else _num(t.values[0]))
  return {
      "format": "metalearn.search.v1", "study": study.study_name,
      "storage": storage or "workdir/" + study_lib.DB_FILE, "sampler": config["sampler"],
      "pruner": config["pruner"], "direction": config["direction"],
      "best_params": best.params if best else None,
      "best_value": _num(best.value) if best else None,
      "best_trial": best.number if best else None,
      "pareto_front": ([{"number": t.number, "values": value(t), "params": t.params}
                        for t in study.best_trials] if multi and done else None),
      "states": {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState
                 if any(t.state == s for t in trials)},
      "trials": [{"number": t.number, "state": t.state.name.lower(), "params": t.params,
                  "value": value(t),
                  "intermediate": {str(k): _num(v) for k, v in t.intermediate_values.items()},
                  "diverged": bool(t.user_attrs.get("diverged", False))} for t in trials],
  }
