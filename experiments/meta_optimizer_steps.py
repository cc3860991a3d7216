"""How far random rules move meta-parameters when they are the meta-optimizer (issue #14).

    python experiments/meta_optimizer_steps.py [--steps 100] [--json OUT.json]

Generation 0 of a self-improvement run is a population of random rules, and the best of them
meta-trains every member of generation 1. A ScaledLOpt population stalled there
(docs/self_improvement.md, "0.9.0") where MLPLOpt populations did not. This script builds the
16 random generation-0 rules of `experiments/self_improve_every.py` (MLPLOpt) and of
`experiments/self_improve_scaled.py` (ScaledLOpt; and `self_improve_scaled_abs.py`, the same
rules meta-training with absolute steps) exactly as the loop does, uses each as the
meta-optimizer (``Population.outer_tx``: clipped to global norm 1, then the rule) on a random
member's meta-parameters with a fixed random meta-gradient of global norm 1 (``--fresh``: a new
random direction every step), and prints how far
the meta-parameters moved after ``--steps`` outer steps, in total and per meta-parameter tensor
(relative to the tensor's own norm). No training; seconds on a CPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

import jax
import numpy as np
import optax

import metalearn.parallel as parallel
from metalearn.meta.population import Population

HERE = os.path.dirname(os.path.abspath(__file__))


def recipe(name):
  sys.path.insert(0, HERE)
  spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, f"{name}.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def random_thetas(pop):
  """Generation 0's meta-parameters, member by member, as ``Population.init_members`` draws them."""
  key = jax.random.fold_in(jax.random.key(pop.config.seed), 0)
  return [pop._init_theta(jax.random.split(k)[0]) for k in jax.random.split(key, pop.size)]


def moves(pop, rule_theta, target, grad, steps, fresh):
  """(|delta theta|, {tensor: |delta| / |theta|}) after ``steps`` meta-optimizer steps on
  ``grad`` (``fresh``: a new random direction of the same norm at every step instead)."""
  tx = pop.outer_tx(rule_theta)
  state = tx.init(target)

  def body(carry, k):
    theta, state = carry
    g = grad
    if fresh:
      g = optax.tree.random_like(jax.random.fold_in(jax.random.key(2), k), grad, jax.random.normal)
      g = jax.tree.map(lambda x: x / optax.global_norm(g), g)
    upd, state = tx.update(g, state, theta)
    return (optax.apply_updates(theta, upd), state), None

  (end, _), _ = jax.lax.scan(body, (target, state), np.arange(steps))
  delta = jax.tree.map(lambda a, b: np.asarray(a - b, np.float64), end, target)
  total = float(np.sqrt(sum(np.sum(d ** 2) for d in jax.tree.leaves(delta))))
  rel = {k: float(np.linalg.norm(delta[k]) / max(np.linalg.norm(np.asarray(target[k])), 1e-8))
         for k in delta}
  return total, rel


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--steps", type=int, default=100)
  p.add_argument("--fresh", action="store_true",
                 help="a new random meta-gradient direction at every step (default: one, fixed)")
  p.add_argument("--json", default=None)
  args = p.parse_args()
  mesh = parallel.make_mesh(1)
  out = {}
  for name in ("self_improve_every", "self_improve_scaled", "self_improve_scaled_abs"):
    config = recipe(name)
    pop = Population(config, mesh)
    thetas = random_thetas(pop)
    target = thetas[0]
    grad = optax.tree.random_like(jax.random.key(1), target, jax.random.normal)
    norm = float(optax.global_norm(grad))
    grad = jax.tree.map(lambda g: g / norm, grad)
    rows = [moves(pop, th, target, grad, args.steps, args.fresh) for th in thetas]
    totals = np.array([r[0] for r in rows])
    per = {k: np.array([r[1][k] for r in rows]) for k in rows[0][1]}
    label = config.rule + ("" if not config.get("meta_optimizer_rule_kwargs") else
                           f" (meta-optimizer {dict(config.meta_optimizer_rule_kwargs)})")
    out[label] = {"total": totals.tolist(), "relative": {k: v.tolist() for k, v in per.items()}}
    print(f"{label}: {pop.size} random rules as meta-optimizer, {args.steps} steps of a "
          f"{'fresh random' if args.fresh else 'fixed'} unit meta-gradient")
    q = lambda a: np.nanpercentile(a, [10, 50, 90])
    print(f"  |delta theta| (10/50/90%): {np.round(q(totals), 4).tolist()}; non-finite: "
          f"{int(np.sum(~np.isfinite(totals)))}")
    for k, v in per.items():
      print(f"  {k:10s} relative move (10/50/90%): {np.round(q(v), 4).tolist()}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
