"""The evaluation's numbers against tuned Adam, using only baseline grids already in a cache.

    python experiments/eval_cached_adam.py OPTIMIZER [OPTIMIZER ...] --cache_dir /work/evalcache \\
        [--suite out_of_distribution] [--json OUT.json]

`metalearn evaluate` trains every tuned baseline (Adam, AdamW, AdamW warmup-cosine, SGDM) of
every task it lacks in the cache; on the shared 2-core CPU that takes hours. This script runs the
same per-task code path for the rules (``runner._cached_grid`` under the evaluation's own cache
key, so the grids are shared with `metalearn evaluate`) but never trains a baseline: a task whose
tuned-Adam grid (7 rates x 2 seeds, the evaluation's key) is not in ``cache_dir``, nor Adam at
its tuned rate from experiments/ood_vs_tuned_adam.py (``adam_tuned``, the same curve), is skipped
and listed. Speedup and "reached" are computed by ``metrics.speedup`` exactly as in the evaluation; the
summary also holds ``median_final_ratio``, the median over tasks of the rule's final training loss
over tuned Adam's (the self-improvement report's held-out score), and with several optimizers a
table of those ratios is printed (one column each, e.g. every generation of a lineage).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os

import numpy as np

from metalearn import artifacts
from metalearn.evaluate import metrics, runner
from metalearn.evaluate.baselines import TUNED
from metalearn.evaluate.suites import get_suite
from metalearn.tasks import make_task
from metalearn.tasks.training import train_grid

_spec = importlib.util.spec_from_file_location(
    "ood_vs_tuned_adam", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                      "ood_vs_tuned_adam.py"))
_ood = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ood)
TUNED_ADAM_LR = _ood.TUNED_ADAM_LR   # Adam's rate tuned on the full grid, per task


def final_ratio(row) -> float:
  """The rule's final training loss over tuned Adam's (inf if the rule has none)."""
  return float("inf") if row["rule_final"] is None else row["rule_final"] / row["adam_final"]


def main():
  p = argparse.ArgumentParser()
  p.add_argument("optimizers", nargs="+")
  p.add_argument("--cache_dir", required=True)
  p.add_argument("--suite", default="out_of_distribution")
  p.add_argument("--json", default=None)
  args = p.parse_args()
  adam = next(b for b in TUNED if b.name == "adam")
  seeds = list(range(runner.DEFAULT_SEEDS))
  rules = {o: artifacts.resolve(o) for o in args.optimizers}
  out = {o: {"tasks": [], "skipped": []} for o in args.optimizers}
  for item in get_suite(args.suite):
    n = item.num_steps
    common = runner._common_key(item, seeds)   # the evaluation's own cache key
    test_batches = common["test_batches"]
    key = {**common, "baseline": adam.name, "lrs": adam.lrs}
    lr = TUNED_ADAM_LR.get(item.id)
    tuned_key = {**common, "baseline": adam.name, "lrs": [lr]}
    path = os.path.join(args.cache_dir, f"{item.id}-adam-{runner._key_hash(key)}.npz")
    tuned_path = os.path.join(args.cache_dir, f"{item.id}-adam_tuned-{runner._key_hash(tuned_key)}.npz")
    counts = {"hits": 0, "misses": 0}
    if os.path.exists(path):
      grid, _ = runner._cached_grid(args.cache_dir, f"{item.id}-adam", key, None, counts)
      adam_entry, adam_curve = runner._analyze(grid, adam.lrs)
      source = "full grid"
    elif lr is not None and os.path.exists(tuned_path):
      grid, _ = runner._cached_grid(args.cache_dir, f"{item.id}-adam_tuned", tuned_key, None,
                                    counts)
      adam_entry, adam_curve = runner._analyze(grid, None)
      adam_entry["best_lr"] = lr
      source = "tuned lr"
    else:
      for o in args.optimizers:
        out[o]["skipped"].append(item.id)
      print(f"{item.id}: no cached tuned-Adam grid, skipped", flush=True)
      continue
    task = make_task(item.spec)
    for o, (rule, theta, _) in rules.items():
      tx = rule.as_optax(theta, num_steps=n)
      rgrid, _ = runner._cached_grid(
          args.cache_dir, f"{item.id}-rule", {**common, "rule": runner.fingerprint(rule, theta)},
          lambda: train_grid(task, lambda lr: tx, n, [0.0], seeds, num_test_batches=test_batches),
          counts)
      entry, curve = runner._analyze(rgrid, None)
      sp = float(metrics.speedup(curve, adam_curve))
      row = {"id": item.id, "speedup": sp, "reached": bool(sp > 0),
             "rule_final": entry["final_train_loss"], "adam_final": adam_entry["final_train_loss"],
             "adam_lr": adam_entry["best_lr"], "rule_test": entry["final_test_loss"],
             "adam_test": adam_entry["final_test_loss"], "rule_diverged": entry["diverged_seeds"],
             "rule_seconds": entry["seconds"], "adam_source": source}
      out[o]["tasks"].append(row)
      final = "none (diverged)" if row["rule_final"] is None else f"{row['rule_final']:.4g}"
      print(f"{o:28s} {item.id:55s} speedup {sp:5.2f}  final {final} vs adam "
            f"{row['adam_final']:.4g} (lr {row['adam_lr']:.0e})  [{counts}]", flush=True)
  for o, r in out.items():
    r["summary"] = metrics.summarize([t["speedup"] for t in r["tasks"]])
    ratios = [final_ratio(t) for t in r["tasks"]]
    # The self-improvement report's held-out score, on these tasks (lower is better).
    r["summary"]["median_final_ratio"] = float(np.median(ratios)) if ratios else None
    print(o, json.dumps(r["summary"]), "skipped:", r["skipped"])
  if len(out) > 1:   # one column per optimizer: its final training loss / tuned Adam's
    names = list(out)
    print("\nfinal training loss / tuned Adam's")
    print("task".ljust(56) + "".join(f"{i:>9d}" for i in range(len(names))))
    for row in zip(*(out[o]["tasks"] for o in names)):
      print(row[0]["id"][:55].ljust(56) + "".join(f"{final_ratio(t):9.3g}" for t in row))
    print("median".ljust(56) + "".join(f"{out[o]['summary']['median_final_ratio']:9.3g}"
                                       for o in names))
    for i, o in enumerate(names):
      print(f"  {i}: {o}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
