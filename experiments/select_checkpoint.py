"""Meta-validation: score every kept checkpoint of a run on held-out task families; export the best.

    python experiments/select_checkpoint.py RUN_WORKDIR OUT.safetensors [--config experiments/X.py]

Each validation task (the recipe's ``VALIDATION`` list) is trained from scratch for each of the
recipe's ``VALIDATION_HORIZONS`` (one past the longest meta-training horizon; a recipe's
``VALIDATION_HORIZONS_BY_KIND``, e.g. ``{"char_lm": (300, 1000)}``, overrides them for a task
kind whose long runs cost too much) with 2 seeds, by one compiled program per task that takes
theta as an argument, so scoring N checkpoints costs one compile per task. The score of a
checkpoint is the mean over tasks of log(mean training loss over the last 10% of steps); the
run's starting meta-parameters (``init_theta`` if the recipe sets it, else the rule's init) are
scored too, as step 0. With ``--gate R``, only checkpoints whose loss is at most R times the
start's on *every* validation task may be picked (a mean can hide a collapse on one family; the
0.2.0 selection picked such a checkpoint). With ``--average LO:HI`` (repeatable), the
element-wise mean of the meta-parameters of the kept checkpoints with LO <= step <= HI is scored
as one more candidate, ``avg:LO-HI`` (adjacent checkpoints of a noisy run can differ by 2 points
of score; their mean is steadier: docs/rule_quality.md, "0.7.0"). The lowest score among those
is exported with ``save_rule``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from metalearn.checkpoint import Checkpointer
from metalearn.tasks.training import _run
from metalearn.meta import config as config_lib
from metalearn.meta.step import load_init_theta
from metalearn.optimizers import make_rule
from metalearn.optimizers.serialization import save_rule
from metalearn.tasks import TaskSpec, make_task


def checkpoint_thetas(workdir, rule):
  ckpt = Checkpointer(str(epath.Path(workdir) / "checkpoints"), async_save=False, read_only=True)
  template = jax.eval_shape(rule.init_meta_params, jax.random.key(0))
  out = {}
  try:
    for step in ckpt.all_steps():
      arrays, _, _ = ckpt.restore_arrays("theta", step=step)
      out[step] = jax.tree.map(lambda t, x: jnp.asarray(x, t.dtype), template, arrays)
  finally:
    ckpt.close()
  return out


def average_thetas(kept, spec_range):
  """``(key, steps, theta)``: the element-wise mean of the checkpoints ``kept`` (step -> theta)
  whose step is in ``spec_range`` ("LO:HI", inclusive)."""
  try:
    lo, hi = (int(x) for x in spec_range.split(":"))
  except ValueError:
    raise SystemExit(f"--average {spec_range!r}: expected LO:HI, two outer steps, e.g. 900:1800.")
  steps = sorted(s for s in kept if lo <= s <= hi)
  if len(steps) < 2:
    raise SystemExit(f"--average {spec_range}: {len(steps)} kept checkpoint(s) in that range "
                     f"(kept: {sorted(kept)}); give a range with at least two.")
  theta = jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs), 0), *(kept[s] for s in steps))
  return f"avg:{lo}-{hi}", steps, theta


def scorer(rule, spec, horizon, seeds=2):
  task = make_task(spec)

  @jax.jit
  def run(theta):
    tx = rule.transformation(theta, horizon)
    keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in range(seeds)])
    f = lambda k: _run(task, tx, horizon, jax.random.wrap_key_data(k), task.data, task.test_data)
    losses, test, _ = jax.vmap(f)(keys)
    tail = losses[:, -max(1, horizon // 10):]
    return jnp.mean(tail), jnp.mean(test)
  return run


def main():
  p = argparse.ArgumentParser()
  p.add_argument("workdir")
  p.add_argument("out")
  p.add_argument("--config", default="experiments/scaled_lopt.py")
  p.add_argument("--gate", type=float, default=None,
                 help="eligible checkpoints are at most GATE x the start's loss on every task")
  p.add_argument("--average", action="append", default=[], metavar="LO:HI",
                 help="also score the mean meta-parameters of the checkpoints in [LO, HI]")
  args = p.parse_args()
  spec = importlib.util.spec_from_file_location("recipe", args.config)
  recipe = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(recipe)
  config = config_lib.load_config(args.config)
  rule = make_rule(config.rule, **dict(config.rule_kwargs))
  start = (load_init_theta(config, rule) if config.init_theta
           else rule.init_meta_params(jax.random.key(config.seed)))
  thetas = {0: jax.tree.map(jnp.asarray, start)}
  every = getattr(recipe, "VALIDATION_EVERY", 1)
  kept = checkpoint_thetas(args.workdir, rule)
  thetas.update({s: t for s, t in kept.items() if s > 0 and (s % every == 0 or s == max(kept))})
  averaged = {}
  for spec_range in args.average:
    key, steps, theta = average_thetas(kept, spec_range)
    thetas[key], averaged[key] = theta, steps
  scores = {s: [] for s in thetas}
  t0 = time.time()
  horizons = getattr(recipe, "VALIDATION_HORIZONS", (config.eval_horizon,))
  by_kind = getattr(recipe, "VALIDATION_HORIZONS_BY_KIND", {})
  for d in recipe.VALIDATION:
    for h in by_kind.get(d["kind"], horizons):
      run = scorer(rule, TaskSpec.from_dict(dict(d)), h)
      for s, theta in thetas.items():
        train, test = (float(x) for x in run(theta))
        scores[s].append({"task": f"{TaskSpec.from_dict(dict(d)).name}@{h}", "train": train,
                          "test": test})
      print(f"{TaskSpec.from_dict(dict(d)).name}@{h} scored ({time.time() - t0:.0f}s)", flush=True)
  table = {s: float(np.mean([np.log(r["train"]) if np.isfinite(r["train"]) else 50.0
                             for r in rows])) for s, rows in scores.items()}
  order = lambda k: (isinstance(k, str), k if isinstance(k, int) else averaged[k][-1])
  for s in sorted(table, key=order):
    print(s, round(table[s], 4), " ".join(f"{r['train']:.4f}" for r in scores[s]))
  eligible = [s for s in table if args.gate is None or all(
      np.isfinite(r["train"]) and r["train"] <= args.gate * r0["train"]
      for r, r0 in zip(scores[s], scores[0]))]
  print("eligible under the gate:", sorted(eligible, key=order))
  best = min(eligible, key=table.get)   # step 0 is always eligible
  print("best step", best, "score", table[best], f"({time.time() - t0:.0f}s)")
  extra = {"averaged_steps": averaged[best]} if best in averaged else {}
  save_rule(args.out, rule, jax.tree.map(np.asarray, thetas[best]),
            outer_step=int(best) if best not in averaged else averaged[best][-1],
            validation_score=table[best], validation_tasks=[r["task"] for r in scores[best]],
            recipe=os.path.basename(args.config), **extra)
  with open(os.path.splitext(args.out)[0] + "_validation.json", "w") as f:
    json.dump({"scores": {str(k): v for k, v in table.items()}, "best": best, "gate": args.gate,
               "eligible": sorted(eligible, key=order), "averaged": averaged,
               "per_task": {str(k): v for k, v in scores.items()}}, f, indent=1)


if __name__ == "__main__":
  main()
