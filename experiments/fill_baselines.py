"""Trains (or finds cached) the tuned baselines' grids of a suite, so later evaluations of rules
with the same ``--cache_dir`` only train the rule.

    python experiments/fill_baselines.py --suite out_of_distribution --cache_dir DIR \
        [--baselines adam,adamw_cosine,adamw,sgdm]

Baselines are filled in the order given, task by task (cheapest tasks first within a baseline),
so the primary comparisons are ready first. Prints each grid's wall time.
"""
from __future__ import annotations

import argparse
import time

from metalearn.evaluate import runner
from metalearn.evaluate.baselines import TUNED
from metalearn.evaluate.suites import get_suite


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--suite", default="out_of_distribution")
  p.add_argument("--cache_dir", required=True)
  p.add_argument("--baselines", default=",".join(b.name for b in TUNED))
  p.add_argument("--seeds", type=int, default=runner.DEFAULT_SEEDS)
  args = p.parse_args()
  by_name = {b.name: b for b in TUNED}
  names = args.baselines.split(",")
  unknown = [n for n in names if n not in by_name]
  if unknown:
    raise SystemExit(f"unknown baseline(s) {unknown}: choose from {sorted(by_name)}")
  items = sorted(get_suite(args.suite), key=lambda i: i.num_steps)
  seeds = list(range(args.seeds))
  for name in names:
    for item in items:
      counts = {"hits": 0, "misses": 0}
      t0 = time.perf_counter()
      runner.baseline_grid(item, by_name[name], seeds, args.cache_dir, counts)
      state = "cached" if counts["hits"] else f"{time.perf_counter() - t0:.0f} s"
      print(f"{name:13s} {item.id}: {state}", flush=True)


if __name__ == "__main__":
  main()
