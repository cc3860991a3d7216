"""Successor training: a learned rule against tuned Adam, AdamW and SGD+momentum on a suite.

    results = run_evaluation("pretrained:default", "demo", "runs/eval_default")

For every task of the suite the rule trains ``seeds`` runs (told the task's horizon), and each
baseline family trains its whole learning-rate grid x seeds in one compiled, vmapped program. The
baseline's learning rate is tuned on the final training loss; curves are compared by ``speedup``.
Every grid of runs is cached as an ``.npz`` keyed by what determines it, so re-running resumes,
and evaluations sharing a ``cache_dir`` train each baseline once.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import tempfile
import time
from typing import Callable

import jax
import numpy as np
import optax

import metalearn.artifacts as artifacts
from metalearn.evaluate import metrics
from metalearn.evaluate.suites import SuiteTask, get_suite
from metalearn.tasks.training import train_grid
from metalearn.tasks import make_task

FORMAT = "metalearn.eval.v1"
RESULTS = "results.json"
CACHE_VERSION = 2
DEFAULT_SEEDS = 2
PRIMARY = "adam"


@dataclasses.dataclass(frozen=True)
class Baseline:
  """A hand-designed optimizer family: ``make_tx(lr)`` and the learning rates it is tuned over."""

  name: str
  label: str
  make_tx: Callable[[jax.Array], optax.GradientTransformation]
  lrs: tuple[float, ...]


def _half_decades(lo: float, hi: float) -> tuple[float, ...]:
  """10**lo ... 10**hi in steps of 10**0.5 (1e-4, 3.2e-4, 1e-3, ...)."""
  return tuple(float(x) for x in np.logspace(lo, hi, int(round(2 * (hi - lo))) + 1))


BASELINES = (
    Baseline("adam", "Adam", lambda lr: optax.adam(lr), _half_decades(-4, -1)),
    Baseline("adamw", "AdamW (wd 1e-4)", lambda lr: optax.adamw(lr, weight_decay=1e-4),
             _half_decades(-4, -1)),
    Baseline("sgdm", "SGD+momentum 0.9", lambda lr: optax.sgd(lr, momentum=0.9),
             _half_decades(-3, 1)),
)

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


def _cached_grid(cache_dir: str, name: str, key: dict, compute) -> tuple[dict, str]:
  """Loads the grid of runs for ``key`` from ``cache_dir``, else computes and stores it."""
  path = os.path.join(cache_dir, f"{name}-{_key_hash(key)}.npz")
  if os.path.exists(path):
    try:
      with np.load(path) as f:
        return {k: f[k] for k in f.files}, path
    except (OSError, ValueError, EOFError):
      pass  # a damaged cache file is recomputed
  t0 = time.perf_counter()
  out = compute()
  out["seconds"] = np.asarray(time.perf_counter() - t0)
  os.makedirs(cache_dir, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **out)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return out, path


# -- analysis --------------------------------------------------------------------------------------


def _num(x):
  x = float(x)
  return x if np.isfinite(x) else None


def _analyze(grid: dict, lrs) -> tuple[dict, np.ndarray]:
  """Tunes the lr of ``grid["train_loss"][lr, seed, step]``; returns (JSON entry, mean curve)."""
  curves = grid["train_loss"]
  best = metrics.tune(curves)
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
    scores = metrics.tail_mean(curves).mean(-1)
    entry.update({
        "best_lr": float(lrs[best]),
        "best_lr_at_edge": bool(len(lrs) > 1 and best in (0, len(lrs) - 1)),
        "lrs": [float(x) for x in lrs],
        "tail_train_loss_by_lr": [_num(x) for x in scores],
        "diverged_seeds_by_lr": [int(x) for x in div.sum(-1)],
    })
  return entry, mean_curve


def _evaluate_task(item: SuiteTask, rule, theta, rule_id: str, seeds: list[int],
                   workdir: str, cache_dir: str, progress) -> dict:
  task = make_task(item.spec)
  n = item.num_steps
  test_batches = max(4, -(-1024 // item.spec.batch_size))
  common = {"v": CACHE_VERSION, "versions": _VERSIONS, "spec": item.spec.to_dict(),
            "num_steps": n, "seeds": seeds, "test_batches": test_batches}
  entries, curves, files = {}, {}, {}

  progress.set_postfix_str(f"{item.id}: learned rule")
  tx = rule.as_optax(theta, num_steps=n)
  grid, files["rule"] = _cached_grid(
      cache_dir, f"{item.id}-rule", {**common, "rule": rule_id},
      lambda: train_grid(task, lambda lr: tx, n, [0.0], seeds, num_test_batches=test_batches))
  entries["rule"], curves["rule"] = _analyze(grid, None)
  progress.update()
  for b in BASELINES:
    progress.set_postfix_str(f"{item.id}: {b.name} x {len(b.lrs)} lrs")
    grid, files[b.name] = _cached_grid(
        cache_dir, f"{item.id}-{b.name}", {**common, "baseline": b.name, "lrs": b.lrs},
        lambda b=b: train_grid(task, b.make_tx, n, b.lrs, seeds, num_test_batches=test_batches))
    entries[b.name], curves[b.name] = _analyze(grid, b.lrs)
    progress.update()
  sp = {b.name: metrics.speedup(curves["rule"], curves[b.name]) for b in BASELINES}
  return {
      "id": item.id, "name": item.spec.name, "spec": item.spec.to_dict(), "num_steps": n,
      "num_params": task.num_params(), "optimizers": entries,
      "speedup": {k: _num(v) for k, v in sp.items()},
      "reached": {k: bool(v > 0) for k, v in sp.items()},
      "rule_diverged": entries["rule"]["diverged_seeds"] > 0,
      "runs": {k: os.path.relpath(v, workdir) for k, v in files.items()},
  }


def _rule_not_worse(task: dict, baseline: str) -> bool:
  rule, base = (task["optimizers"][k]["final_train_loss"] for k in ("rule", baseline))
  return rule is not None and (base is None or rule <= base)


def summarize(tasks: list[dict]) -> dict:
  """Per baseline family: median / geometric-mean speedup and the share of tasks reached."""
  out = {"primary_baseline": PRIMARY, "num_tasks": len(tasks),
         "rule_diverged_runs": int(sum(t["optimizers"]["rule"]["diverged_seeds"] for t in tasks)),
         "rule_diverged_tasks": int(sum(t["rule_diverged"] for t in tasks)), "vs": {}}
  for b in BASELINES:
    s = metrics.summarize([t["speedup"][b.name] for t in tasks])
    s["num_lower_final_loss"] = int(sum(_rule_not_worse(t, b.name) for t in tasks))
    out["vs"][b.name] = s
  p = out["vs"][PRIMARY]
  out.update({"median_speedup_vs_adam": p["median_speedup"],
              "geomean_speedup_vs_adam": p["geomean_speedup"],
              "reached_fraction_vs_adam": p["reached_fraction"]})
  return out


# -- results.json ----------------------------------------------------------------------------------


def _write_json(path: str, obj) -> None:
  d = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(obj, f, indent=1, allow_nan=False)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


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


def run_evaluation(optimizer: str, suite: str, workdir: str, seeds: int | None = None, *,
                   cache_dir: str | None = None, progress: bool = True) -> dict:
  """Evaluates ``optimizer`` on ``suite`` against tuned baselines; writes ``workdir/results.json``.

  ``optimizer`` is ``pretrained:NAME``, ``init:RULE``, a meta-train workdir or a ``.safetensors``
  file. ``seeds`` runs per configuration (default 2). Grids of runs are cached under
  ``cache_dir`` (default ``workdir/runs``). Refuses to replace a results.json of another optimizer
  or suite. Returns the results dict.
  """
  from tqdm.auto import tqdm
  items = get_suite(suite)
  seeds = DEFAULT_SEEDS if seeds is None else seeds
  if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
    raise ValueError(f"seeds must be a positive integer (runs per configuration), got {seeds!r}.")
  path = os.path.join(workdir, RESULTS)
  _check_existing(path, optimizer, suite)
  rule, theta, info = artifacts.resolve(optimizer)
  os.makedirs(workdir, exist_ok=True)
  cache_dir = cache_dir or os.path.join(workdir, "runs")
  rule_id = fingerprint(rule, theta)
  seed_list = list(range(int(seeds)))
  results = {
      "format": FORMAT, "optimizer": optimizer, "suite": suite, "seeds": int(seeds),
      "rule": {"name": getattr(rule, "name", type(rule).__name__), "config": rule.config(),
               "fingerprint": rule_id,
               "info": json.loads(json.dumps(info, default=str))},
      "baselines": {b.name: {"label": b.label, "lrs": list(b.lrs)} for b in BASELINES},
      "smooth_fraction": metrics.SMOOTH_FRACTION, "tail_fraction": metrics.TAIL_FRACTION,
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "backend": jax.default_backend(), "complete": False, "tasks": [],
  }
  t0 = time.perf_counter()
  with tqdm(total=len(items) * (1 + len(BASELINES)), desc=f"evaluate {suite}", unit="run",
            disable=not progress) as bar:
    for item in items:
      results["tasks"].append(_evaluate_task(item, rule, theta, rule_id, seed_list, workdir,
                                             cache_dir, bar))
      results["summary"] = summarize(results["tasks"])
      _write_json(path, results)
  results["complete"] = True
  results["elapsed_s"] = time.perf_counter() - t0
  _write_json(path, results)
  return results
