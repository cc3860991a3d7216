"""A cheaper out-of-distribution check: the rule against Adam at each task's tuned learning rate.

    python experiments/ood_vs_tuned_adam.py OPTIMIZER OUT.json [--cache_dir DIR]

`metalearn evaluate` tunes Adam, AdamW and SGDM over 23 learning rates per task; on a shared
2-core CPU that takes hours for the out_of_distribution suite. Adam's tuned rate per task is known
from that full evaluation (docs/artifacts.md, `default`'s card: the grid is the same for every
rule), so this script trains only the rule and Adam at that rate, with the evaluation's seeds
(0, 1), and computes speedup and "reached" exactly as the evaluation does
(`metalearn.evaluate.metrics`). Where a full Adam grid is already in ``cache_dir`` (from
`metalearn evaluate`), it is used instead; for a suite task with no recorded rate, the full Adam
grid is run here. The rule's grid is cached under the evaluation's key.
"""
from __future__ import annotations

import argparse
import glob
import json
import time

import numpy as np

from metalearn import artifacts
from metalearn.evaluate import metrics, runner
from metalearn.evaluate.baselines import TUNED
from metalearn.evaluate.suites import get_suite
from metalearn.tasks import make_task
from metalearn.tasks.training import train_grid

# Adam's best learning rate per task of the out_of_distribution suite, from the full grid
# (1e-4 ... 1e-1, half decades; runs/eval/default_pexp_ood, docs/artifacts.md).
TUNED_ADAM_LR = {
    "image_mlp_mnist5k_256x256x256_relu_b64@500": 1e-3,
    "image_mlp_mnist5k_14_256x256x256x256_relu_b64@1000": 1e-3,
    "cnn_mnist5k_14_8x16x32_relu_b32@300": 10**-1.5,
    "cnn_mnist5k_8x16_relu_b32@200": 1e-2,
    "char_lm_pychars_L2_d32_T32_b16@1000": 10**-2.5,
    "autoencoder_mnist5k_14_128x32_relu_b64@1000": 10**-2.5,
    "linreg_d32_s0@1000": 1e-2,
    "linreg_d32_s0@10000": 1e-3,
    "autoencoder_mnist5k_14_64_relu_b32@5000": 1e-3,
    "image_mlp_mnist5k_14_64x64x64_relu_b32@5000": 1e-3,
    # The tasks added to the suite in 0.3.0, from the full grids of `default`'s 0.4.0 card.
    "cnn_norm_mnist5k_14_8x16_relu_b32@300": 10**-1.5,
    "char_lm_pychars_L1_d128_T32_b8@300": 1e-3,
    "rnn_lm_pychars_L1_d64_T32_b16@500": 1e-2,
    "tabular_mlp_breast_cancer_64x64_relu_b32@500": 10**-2.5,
    "tabular_mlp_wine_32_tanh_b16@300": 1e-1,
    "tabular_mlp_breast_cancer_32_relu_b32@10000": 1e-2,
}


def adam_at_tuned_rate(item, task, seeds, cache_dir, counts):
  """(grid of runs, rate) of Adam at the task's rate in ``TUNED_ADAM_LR``, trained or loaded from
  ``cache_dir`` under the key ``adam_tuned`` (shared with eval_cached_adam.py and
  told_horizon.py)."""
  adam = next(b for b in TUNED if b.name == "adam")
  common, n, lr = runner._common_key(item, seeds), item.num_steps, TUNED_ADAM_LR[item.id]
  grid, _ = runner._cached_grid(
      cache_dir, f"{item.id}-adam_tuned", {**common, "baseline": "adam", "lrs": [lr]},
      lambda: train_grid(task, lambda lr: adam.make_tx(lr, n), n, [lr], seeds,
                         num_test_batches=common["test_batches"]), counts)
  return grid, lr


def main():
  p = argparse.ArgumentParser()
  p.add_argument("optimizer")
  p.add_argument("out")
  p.add_argument("--cache_dir", default="/tmp/runs/evalcache")
  p.add_argument("--suite", default="out_of_distribution")
  args = p.parse_args()
  rule, theta, _ = artifacts.resolve(args.optimizer)
  rule_id = runner.fingerprint(rule, theta)
  seeds = [0, 1]
  adam = next(b for b in TUNED if b.name == "adam")
  counts = {"hits": 0, "misses": 0}
  rows = []
  for item in get_suite(args.suite):
    t0 = time.time()
    task, n = make_task(item.spec), item.num_steps
    common = runner._common_key(item, seeds)
    test_batches = common["test_batches"]
    tx = rule.as_optax(theta, num_steps=n)
    grid, _ = runner._cached_grid(
        args.cache_dir, f"{item.id}-rule", {**common, "rule": rule_id},
        lambda: train_grid(task, lambda lr: tx, n, [0.0], seeds, num_test_batches=test_batches),
        counts)
    rule_entry, rule_curve = runner._analyze(grid, None)
    full = glob.glob(f"{args.cache_dir}/{item.id}-adam-*.npz")
    if full:
      with np.load(full[0]) as f:
        adam_entry, adam_curve = runner._analyze({k: f[k] for k in f.files}, adam.lrs)
      source = "full grid"
    elif item.id not in TUNED_ADAM_LR:   # a task added to the suite since: tune Adam here
      grid, _ = runner._cached_grid(
          args.cache_dir, f"{item.id}-adam", {**common, "baseline": "adam", "lrs": adam.lrs},
          lambda: train_grid(task, lambda lr: adam.make_tx(lr, n), n, adam.lrs, seeds,
                             num_test_batches=test_batches), counts)
      adam_entry, adam_curve = runner._analyze(grid, adam.lrs)
      source = "full grid"
    else:
      grid, lr = adam_at_tuned_rate(item, task, seeds, args.cache_dir, counts)
      adam_entry, adam_curve = runner._analyze(grid, None)
      adam_entry["best_lr"] = lr
      source = "tuned lr"
    sp = metrics.speedup(rule_curve, adam_curve)
    row = {"id": item.id, "num_steps": n, "speedup": float(sp), "reached": bool(sp > 0),
           "rule_final": rule_entry["final_train_loss"], "rule_test": rule_entry["final_test_loss"],
           "rule_diverged": rule_entry["diverged_seeds"] > 0,
           "adam_final": adam_entry["final_train_loss"], "adam_test": adam_entry["final_test_loss"],
           "adam_lr": adam_entry["best_lr"], "adam_source": source}
    rows.append(row)
    print(json.dumps(row), f"({time.time() - t0:.0f}s)", flush=True)
  s = metrics.summarize([r["speedup"] for r in rows])
  summary = {"reached": sum(r["reached"] for r in rows), "num_tasks": len(rows),
             "median_speedup": s["median_speedup"], "geomean_over_reached": s["geomean_speedup"],
             "diverged_tasks": sum(r["rule_diverged"] for r in rows)}
  print(json.dumps(summary))
  with open(args.out, "w") as f:
    json.dump({"optimizer": args.optimizer, "rows": rows, "summary": summary}, f, indent=1)


if __name__ == "__main__":
  main()
