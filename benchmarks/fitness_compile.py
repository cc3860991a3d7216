"""Self-improvement programs on CPU: XLA:CPU's LLVM level 0 (fast compile) ÷ default.

Fitness trains every meta-validation task from scratch with every member's rule; the member
step runs one outer step of every member. Both compile fast at LLVM level 0 and run slower.
This measures what level 0 costs on each fitness family of a recipe and on its member step:
compile + first call, then the median of timed calls, both option sets side by side in one
process. ``population.py`` picks level 0 only for runs too short to win back the default's
longer compile (``cpu_fast_compile``).

    python benchmarks/fitness_compile.py [--config experiments/self_improve_kinds.py]
        [--members 4] [--steps 50] [--repeats 3] [--outer_steps 5]
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
from metalearn.meta.population import Population
import metalearn.parallel as parallel
from metalearn.optimizers import make_rule
from metalearn.meta import config as config_lib


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="experiments/self_improve_kinds.py")
  p.add_argument("--members", type=int, default=4)
  p.add_argument("--steps", type=int, default=50)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--outer_steps", type=int, default=5, help="timed member steps per side")
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
  rows.append(member_step(args))
  print(json.dumps(rows[-1]), flush=True)
  return rows


def member_step(args):
  """The recipe's member step (``Population.step``) at ``--members`` members, both option sets."""
  c = si.load_config(args.config)
  c.population_size = args.members
  row, sides = {"program": "member_step", "members": args.members}, {}
  for name, opts in (("level0", {"xla_backend_optimization_level": 0}), ("default", None)):
    pop = Population(c, parallel.make_mesh(1))
    pop._jit_options, pop._step_fn = opts, None
    members = pop.init_members()
    best = jax.tree.map(lambda x: x[0], members["theta"])
    t0 = time.perf_counter()
    members, loss = pop.step(members, best, 1)
    jax.block_until_ready(loss)
    row[f"{name}_first_s"] = time.perf_counter() - t0
    sides[name] = [pop, members, best, []]
  for step in range(args.outer_steps):   # in turns, as above
    for name, side in sides.items():
      pop, members, best, times = side
      t0 = time.perf_counter()
      members, loss = pop.step(members, best, 2 + step)
      jax.block_until_ready(loss)
      times.append(time.perf_counter() - t0)
      side[1] = members
  for name, side in sides.items():
    row[f"{name}_run_s"] = statistics.median(side[3])
  row["run_ratio_level0_over_default"] = row["level0_run_s"] / row["default_run_s"]
  return row


if __name__ == "__main__":
  sys.exit(0 if main() else 1)
