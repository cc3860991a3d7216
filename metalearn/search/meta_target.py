"""The meta-training config as a search target, scored by the held-out evaluation.

    space = {"outer_lr": ("log", 1e-4, 1e-2), "es_sigma": ("log", 1e-3, 1e-1),
             "truncation_length": ("int", 5, 20), "population_per_task": [4, 8]}
    target = MetaConfigTarget("experiments/default.py", workdir="runs/meta_search",
                              overrides={"num_outer_steps": 100, "eval_tasks": [...]})

Every trial meta-trains with ``train_and_evaluate`` in ``WORKDIR/trials/NUMBER`` (its own
checkpoints and logs) and scores the final evaluation (``eval.json``, on ``eval_tasks``: set them
to held-out tasks) as the mean over tasks of the rule's final test loss divided by Adam(1e-3)'s,
so lower is better and 1 means "as good as Adam". Trials change shapes (truncation length,
population), so they run one after another; with ``eval_every`` set, each intermediate evaluation
is reported and a pruned trial stops at once.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from metalearn.meta import config as config_lib
from metalearn.meta.train import train_and_evaluate
from metalearn.search.space import Space


class _Pruned(Exception):
  pass


def score(results: dict) -> float:
  """Mean over eval tasks of (rule's final test loss / Adam(1e-3)'s); inf if anything diverged."""
  ratios = [r["rule"] / r["adam_1e-3"] for r in results.values()]
  return float(np.mean(ratios)) if ratios and np.all(np.isfinite(ratios)) else float("inf")


class MetaConfigTarget:
  """Meta-training configs (base file + ``overrides`` + a trial's parameters); see module doc."""

  num_reports = 1

  def __init__(self, base_config: str | None, *, workdir: str | None = None,
               overrides: dict | None = None):
    self.base_path, self.overrides = base_config, dict(overrides or {})
    self.workdir = workdir
    base = config_lib.load_config(base_config)
    config_lib.override(base, self.overrides, source="meta_overrides")
    self.base = base
    self.num_reports = max(1, base.num_outer_steps // base.eval_every) if base.eval_every else 1

  def check_space(self, space: Space) -> None:
    unknown = set(space.names) - set(self.base)
    if unknown:
      raise ValueError(f"search space names {sorted(unknown)}, which are not meta-training config "
                       f"keys (see metalearn.meta.config.default_config).")

  def config_for(self, params: dict):
    config = config_lib.load_config(self.base_path)
    config_lib.override(config, {**self.overrides, **params}, source="trial")
    config.progress = False
    return config

  def run(self, params: list[dict], report) -> list[dict]:
    if self.workdir is None:
      raise ValueError("MetaConfigTarget needs a workdir for the trials' meta-training runs.")
    outcomes = []
    for i, p in enumerate(params):
      config = self.config_for(p)
      folder = os.path.join(self.workdir, "trials", _trial_id(p))  # a retry resumes it

      def on_eval(step, results, i=i):
        if step < config.num_outer_steps and report(
            [i], step // config.eval_every, [score(results)])[0]:
          raise _Pruned()

      try:
        train_and_evaluate(config, folder, eval_callback=on_eval)
      except _Pruned:
        outcomes.append({"value": float("nan"), "workdir": folder})
        continue
      value = score(_final_eval(folder))
      outcomes.append({"value": value, "diverged": not np.isfinite(value), "workdir": folder})
    return outcomes


def _trial_id(params: dict) -> str:
  return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _final_eval(folder: str) -> dict:
  with open(os.path.join(folder, "eval.json")) as f:
    return json.load(f)
