"""Successor training: a learned rule against tuned baselines on a suite.

    results = run_evaluation("pretrained:default", "demo", "runs/eval_default")

For every task of the suite the rule trains ``seeds`` runs (told the task's horizon), and each
baseline family (``metalearn.evaluate.baselines``) trains its whole learning-rate grid x seeds in
one compiled, vmapped program. The baseline's learning rate is tuned on the final training loss;
curves are compared by ``speedup``. Every grid of runs is cached as an ``.npz`` keyed by what
determines it, so re-running resumes, and evaluations sharing a ``cache_dir`` train each baseline
once.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import time

import jax
import numpy as np
import optax

import metalearn.artifacts as artifacts
from metalearn.evaluate import files, metrics
from metalearn.evaluate.baselines import BASELINES, DEFAULT, TUNED, lr_index
from metalearn.evaluate.suites import SuiteTask, get_suite
from metalearn.evaluate.summary import COMPARED, classify, summarize
from metalearn.tasks.training import train_grid
from metalearn.tasks import make_task

FORMAT = "metalearn.eval.v2"
RESULTS = "results.json"
CACHE_VERSION = 2
DEFAULT_SEEDS = 2

# -- the learned rule ------------------------------------------------------------------------------


def fingerprint(rule, theta) -> str:
  """A short hash of the rule's class, math version, config and meta-parameter values."""
  ident = {"rule": type(rule).__name__, "math_version": getattr(rule, "math_version", 1),
           "config": rule.config()}
  h = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode())
  for leaf in jax.tree.leaves(theta):
    h.update(np.asarray(leaf, np.float32).tobytes())
  return h.hexdigest()[:16]


# -- cached grids of runs --------------------------------------------------------------------------


# Runs are recomputed when the code that produced them may have changed.
_VERSIONS = {"jax": jax.__version__, "optax": optax.__version__}


def _key_hash(key: dict) -> str:
  return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _cached_grid(cache_dir: str, name: str, key: dict, compute, counts: dict) -> tuple[dict, str]:
  """Loads the grid of runs for ``key`` from ``cache_dir``, else computes and stores it; counts
  ``counts["hits"]`` and ``counts["misses"]``."""
  path = os.path.join(cache_dir, f"{name}-{_key_hash(key)}.npz")
  if os.path.exists(path):
    try:
      with np.load(path) as f:
        out = {k: f[k] for k in f.files}
      counts["hits"] += 1
      return out, path
    except (OSError, ValueError, EOFError):
      pass  # a damaged cache file is recomputed
  counts["misses"] += 1
  if not os.path.isdir(cache_dir):  # made (or refused, with the fix) before the runs, not after
    files.check_writable_dir(cache_dir, "the cache directory")
  t0 = time.perf_counter()
  out = compute()
  out["seconds"] = np.asarray(time.perf_counter() - t0)
  files.write_atomic(path, lambda f: np.savez(f, **out))
  return out, path


# -- analysis --------------------------------------------------------------------------------------


def _num(x):
  x = float(x)
  return x if np.isfinite(x) else None


def _analyze(grid: dict, lrs, best: int | None = None) -> tuple[dict, np.ndarray]:
  """Tunes the lr of ``grid["train_loss"][lr, seed, step]`` (or takes index ``best``); returns
  (JSON entry, mean curve)."""
  curves = grid["train_loss"]
  tuned = best is None
  best = metrics.tune(curves) if tuned else best
  mean_curve = metrics.as_inf(curves[best]).mean(0)
  smoothed = metrics.smooth(mean_curve)
  steps, values = metrics.downsample(smoothed)
  div = metrics.diverged(curves, grid["init_loss"])
  entry = {
      "final_train_loss": _num(smoothed[-1]),
      "final_test_loss": _num(np.mean(grid["test_loss"][best])),
      "diverged_seeds": int(div[best].sum()),
      "curve": {"step": steps, "loss": values},
      "seconds": float(grid["seconds"]),
  }
  if lrs is not None:
    entry["best_lr"] = float(lrs[best])
  if lrs is not None and tuned:
    entry.update({
        "best_lr_at_edge": bool(len(lrs) > 1 and best in (0, len(lrs) - 1)),
        "lrs": [float(x) for x in lrs],
        "tail_train_loss_by_lr": [_num(x) for x in metrics.tail_mean(curves).mean(-1)],
        "final_train_loss_by_lr": [_num(x) for x in metrics.final_losses(curves)],
        "diverged_seeds_by_lr": [int(x) for x in div.sum(-1)],
    })
  return entry, mean_curve


def _common_key(item: SuiteTask, seeds: list[int]) -> dict:
  test_batches = max(4, -(-1024 // item.spec.batch_size))
  return {"v": CACHE_VERSION, "versions": _VERSIONS, "spec": item.spec.to_dict(),
          "num_steps": item.num_steps, "seeds": seeds, "test_batches": test_batches}


def baseline_grid(item: SuiteTask, baseline, seeds: list[int], cache_dir: str,
                  counts: dict | None = None) -> tuple[dict, str]:
  """The grid of runs of a tuned ``baseline`` (from ``baselines.TUNED``) on a suite task: loaded
  from ``cache_dir`` or trained and stored there. Baseline grids do not depend on the rule, so one
  cache directory serves the evaluations of many rules (``metalearn evaluate --cache_dir``)."""
  common = _common_key(item, seeds)
  n = item.num_steps
  return _cached_grid(
      cache_dir, f"{item.id}-{baseline.name}", {**common, "baseline": baseline.name,
                                                "lrs": baseline.lrs},
      lambda: train_grid(make_task(item.spec), lambda lr: baseline.make_tx(lr, n), n,
                         baseline.lrs, seeds, num_test_batches=common["test_batches"]),
      {"hits": 0, "misses": 0} if counts is None else counts)


def _evaluate_task(item: SuiteTask, rule, theta, rule_id: str, seeds: list[int],
                   workdir: str, cache_dir: str, progress, counts: dict, tuned) -> dict:
  task = make_task(item.spec)
  n = item.num_steps
  common = _common_key(item, seeds)
  test_batches = common["test_batches"]
  entries, curves, paths, grids = {}, {}, {}, {}

  progress.set_postfix_str(f"{item.id}: learned rule")
  tx = rule.as_optax(theta, num_steps=n)
  grid, paths["rule"] = _cached_grid(
      cache_dir, f"{item.id}-rule", {**common, "rule": rule_id},
      lambda: train_grid(task, lambda lr: tx, n, [0.0], seeds, num_test_batches=test_batches),
      counts)
  entries["rule"], curves["rule"] = _analyze(grid, None)
  progress.update()
  for b in tuned:
    progress.set_postfix_str(f"{item.id}: {b.name} x {len(b.lrs)} lrs")
    grids[b.name], paths[b.name] = baseline_grid(item, b, seeds, cache_dir, counts)
    entries[b.name], curves[b.name] = _analyze(grids[b.name], b.lrs)
    progress.update()
  family = next(b for b in TUNED if b.name == DEFAULT.family)
  entries[DEFAULT.name], curves[DEFAULT.name] = _analyze(
      grids[family.name], family.lrs, best=lr_index(family.lrs, DEFAULT.lr))
  paths[DEFAULT.name] = paths[family.name]
  sp = {k: metrics.speedup(curves["rule"], curves[k]) for k in COMPARED if k in curves}
  rule_final = entries["rule"]["final_train_loss"]
  trials = metrics.trials_to_match(metrics.final_losses(grids[family.name]["train_loss"]),
                                   np.inf if rule_final is None else rule_final)
  return {
      "id": item.id, "name": item.spec.name, "spec": item.spec.to_dict(), "num_steps": n,
      "num_params": task.num_params(), "optimizers": entries,
      "speedup": {k: _num(v) for k, v in sp.items()},
      "reached": {k: bool(v > 0) for k, v in sp.items()},
      "trials_to_match": _num(trials),
      "rule_diverged": entries["rule"]["diverged_seeds"] > 0,
      "runs": {k: os.path.relpath(v, workdir) for k, v in paths.items()},
  }


# -- results.json ----------------------------------------------------------------------------------


def _check_existing(path: str, optimizer: str, suite: str) -> None:
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} exists but is not readable results JSON ({e}); delete it or use "
                     "another --workdir.") from e
  if old.get("optimizer") != optimizer or old.get("suite") != suite:
    raise ValueError(f"{path} holds results of optimizer {old.get('optimizer')!r} on suite "
                     f"{old.get('suite')!r}, not {optimizer!r} on {suite!r}; use another --workdir "
                     "(or delete that file) to keep both.")


def select_baselines(names=None) -> tuple:
  """The tuned baselines named in ``names`` (all of ``BASELINES`` when None), in their order.
  Adam is always among them: the headline numbers, the untuned default and "trials to match"
  are read from its grid."""
  if names is None:
    return TUNED
  names = [names] if isinstance(names, str) else list(names)
  unknown = sorted(set(names) - set(BASELINES))
  if unknown:
    raise ValueError(f"unknown baseline(s) {unknown}: choose from {list(BASELINES)}.")
  if DEFAULT.family not in names:
    raise ValueError(f"baselines must include {DEFAULT.family!r} (the headline numbers, the "
                     f"untuned default and trials-to-match use its grid), got {names}.")
  return tuple(b for b in TUNED if b.name in names)


def run_evaluation(optimizer: str, suite: str, workdir: str, seeds: int | None = None, *,
                   cache_dir: str | None = None, progress: bool = True,
                   baselines=None, task_ids=None) -> dict:
  """Evaluates ``optimizer`` on ``suite`` against tuned baselines; writes ``workdir/results.json``.

  ``optimizer`` is ``pretrained:NAME``, ``init:RULE``, a meta-train workdir or a ``.safetensors``
  file. ``seeds`` runs per configuration (default 2). Grids of runs are cached under
  ``cache_dir`` (default ``workdir/runs``). Refuses to replace a results.json of another optimizer
  or suite; a workdir that is a file, not writable or full raises ``files.WorkdirError`` before
  any training. ``baselines`` limits the tuned baselines to these names (default: all of
  ``BASELINES``; ``adam`` is required), to save compute. ``task_ids`` (ids of the suite's tasks,
  e.g. ``"linreg_d32_s0@1000"``) evaluates only those. Returns the results dict
  (``summary.summary_text`` turns it into a few lines).
  """
  from tqdm.auto import tqdm
  items = get_suite(suite)
  tuned = select_baselines(baselines)
  if task_ids:
    unknown = sorted(set(task_ids) - {t.id for t in items})
    if unknown:
      raise ValueError(f"task ids {unknown} are not in suite {suite!r}; its ids: "
                       f"{[t.id for t in items]}.")
    items = [t for t in items if t.id in set(task_ids)]
  seeds = DEFAULT_SEEDS if seeds is None else seeds
  if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
    raise ValueError(f"seeds must be a positive integer (runs per configuration), got {seeds!r}.")
  path = os.path.join(workdir, RESULTS)
  _check_existing(path, optimizer, suite)
  rule, theta, info = artifacts.resolve(optimizer)
  files.check_writable_dir(workdir)
  cache_dir = cache_dir or os.path.join(workdir, "runs")
  files.check_writable_dir(cache_dir, "cache_dir")
  rule_id = fingerprint(rule, theta)
  seed_list = list(range(int(seeds)))
  info = json.loads(json.dumps(info, default=str))
  counts = {"hits": 0, "misses": 0}
  results = {
      "format": FORMAT, "optimizer": optimizer, "suite": suite, "seeds": int(seeds),
      "workdir": os.path.abspath(workdir),
      "rule": {"name": getattr(rule, "name", type(rule).__name__), "config": rule.config(),
               "fingerprint": rule_id, "info": info},
      "baselines": {**{b.name: {"label": b.label, "lrs": list(b.lrs)} for b in tuned},
                    DEFAULT.name: {"label": DEFAULT.label, "lrs": [DEFAULT.lr],
                                   "family": DEFAULT.family}},
      "tuned_baselines": [b.name for b in tuned],
      "smooth_fraction": metrics.SMOOTH_FRACTION, "tail_fraction": metrics.TAIL_FRACTION,
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "backend": jax.default_backend(), "complete": False, "tasks": [], "cache": counts,
  }
  t0 = time.perf_counter()
  with tqdm(total=len(items) * (1 + len(tuned)), desc=f"evaluate {suite}", unit="run",
            disable=not progress) as bar:
    for item in items:
      entry = _evaluate_task(item, rule, theta, rule_id, seed_list, workdir, cache_dir, bar,
                             counts, tuned)
      entry["distribution"] = classify(item, suite, info)
      results["tasks"].append(entry)
      results["summary"] = summarize(results["tasks"])
      results["elapsed_s"] = time.perf_counter() - t0
      files.write_json(path, results)
  results["complete"] = True
  files.write_json(path, results)
  return results
