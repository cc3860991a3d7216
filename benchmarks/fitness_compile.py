"""Self-improvement fitness on CPU: XLA:CPU's LLVM level 0 (fast compile) ÷ default, per family.

Fitness trains every meta-validation task from scratch with every member's rule. On CPU the
population's programs are compiled at LLVM level 0 (they are small and run for seconds); this
measures what that costs on each family of a recipe: compile + first call, then the median of
timed calls, both option sets side by side in one process.

    python benchmarks/fitness_compile.py [--config experiments/self_improve_kinds.py]
        [--members 4] [--steps 50] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax

from metalearn.meta import self_improve as si
from metalearn.meta.fitness import Fitness
import metalearn.parallel as parallel
from metalearn.optimizers import make_rule
from metalearn.meta import config as config_lib


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="experiments/self_improve_kinds.py")
  p.add_argument("--members", type=int, default=4)
  p.add_argument("--steps", type=int, default=50)
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args(argv)
  base = si.load_config(args.config)
  mesh = parallel.make_mesh(1)
  rule = make_rule(base.rule, **config_lib.plain(base.rule_kwargs))
  thetas = jax.vmap(rule.init_meta_params)(jax.random.split(jax.random.key(0), args.members))
  rows = []
  for spec in base.eval_tasks:
    c = si.load_config(args.config)
    c.eval_tasks, c.fitness_horizons, c.fitness_horizon = (spec,), (), args.steps
    c.fitness_seeds = 1
    row = {"task": dict(spec)}
    fits = {name: Fitness(c, rule, mesh, opts) for name, opts in
            (("level0", {"xla_backend_optimization_level": 0}), ("default", None))}
    times = {name: [] for name in fits}
    for name, fit in fits.items():
      t0 = time.perf_counter()
      fit.task_fitness(thetas)
      row[f"{name}_first_s"] = time.perf_counter() - t0
    for _ in range(args.repeats):   # in turns, so both sides see the same machine load
      for name, fit in fits.items():
        t0 = time.perf_counter()
        fit.task_fitness(thetas)
        times[name].append(time.perf_counter() - t0)
    for name in fits:
      row[f"{name}_run_s"] = statistics.median(times[name])
    row["run_ratio_level0_over_default"] = row["level0_run_s"] / row["default_run_s"]
    rows.append(row)
    print(json.dumps(row), flush=True)
  return rows


if __name__ == "__main__":
  sys.exit(0 if main() else 1)
