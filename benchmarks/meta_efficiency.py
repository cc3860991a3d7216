"""Meta-training efficiency: inner steps/s of meta-training ÷ inner steps/s of plain vmapped Adam.

Both sides train the same task population (the config's task types × population × 2 antithetic
runs for ES-family estimators) for the same truncation, in one process, timed in turns; the ratio
of medians is printed with the compile time of one outer step.

    python benchmarks/meta_efficiency.py [--config experiments/NAME.py] [--config.KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import optax

from metalearn.meta import config as config_lib
from metalearn.meta.step import MetaStep


def plain_adam_step(trainer: MetaStep):
  """One jitted call: every task's population trained K steps with vmapped Adam (no meta-grad)."""
  runs = trainer.config.population_per_task * trainer.estimator.runs_per_member
  k = trainer.config.truncation_length
  tx = optax.adam(1e-3)

  def train_task(task, data, key, carry):
    def step(c, kk):
      params, opt = c
      loss, g = jax.value_and_grad(task.loss)(params, task.batch(data, kk))
      u, opt = tx.update(g, opt, params)
      return (optax.apply_updates(params, u), opt), loss
    return jax.lax.scan(step, carry, jax.random.split(key, k))

  def init(key):
    out = []
    for i, task in enumerate(trainer.tasks):
      keys = jax.random.split(jax.random.fold_in(key, i), runs)
      params = jax.vmap(task.init)(keys)
      out.append((params, jax.vmap(tx.init)(params)))
    return out

  @jax.jit
  def step(carries, datas, key):
    new, losses = [], []
    for i, (task, data, carry) in enumerate(zip(trainer.tasks, datas, carries)):
      keys = jax.random.split(jax.random.fold_in(key, i), runs)
      c, l = jax.vmap(lambda kk, cc, task=task, data=data: train_task(task, data, kk, cc))(keys, carry)
      new.append(c)
      losses.append(jnp.mean(l))
    return new, sum(losses)

  return init, step, runs * k * len(trainer.tasks)


def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  flags = [a[len("--config."):] for a in argv if a.startswith("--config.")]
  p = argparse.ArgumentParser()
  p.add_argument("--config", default=None)
  p.add_argument("--rounds", type=int, default=9)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--json", default=None)
  args = p.parse_args([a for a in argv if not a.startswith("--config.")])
  config = config_lib.load_config(args.config)
  config.progress = False
  config_lib.apply_flags(config, flags)
  trainer = MetaStep(config)

  state = trainer.init_state()
  t = time.perf_counter()
  state, metrics, _ = trainer.step(state)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t

  init, adam_step, adam_inner = plain_adam_step(trainer)
  carries = init(jax.random.key(0))
  carries, loss = adam_step(carries, trainer.datas, jax.random.key(1))
  jax.block_until_ready(loss)

  def time_meta(state):
    t = time.perf_counter()
    for _ in range(args.steps):
      state, metrics, _ = trainer.step(state)
    jax.block_until_ready(metrics)
    return trainer.inner_steps_per_outer * args.steps / (time.perf_counter() - t), state

  def time_adam(carries, r):
    t = time.perf_counter()
    for i in range(args.steps):
      carries, loss = adam_step(carries, trainer.datas, jax.random.key(r * 100 + i))
    jax.block_until_ready(loss)
    return adam_inner * args.steps / (time.perf_counter() - t), carries

  meta_rates, adam_rates = [], []
  for r in range(args.rounds):  # in turns, alternating which goes first
    if r % 2:
      adam_rate, carries = time_adam(carries, r)
      meta_rate, state = time_meta(state)
    else:
      meta_rate, state = time_meta(state)
      adam_rate, carries = time_adam(carries, r)
    meta_rates.append(meta_rate)
    adam_rates.append(adam_rate)
  meta, adam = statistics.median(meta_rates), statistics.median(adam_rates)
  # Median of per-round ratios: each pairs the two sides timed moments apart (see step_cost.py).
  efficiency = statistics.median(m / a for m, a in zip(meta_rates, adam_rates))
  result = {"device": jax.devices()[0].device_kind, "num_devices": trainer.num_devices,
            "estimator": config.estimator, "rule": config.rule,
            "tasks": [s.name for s in trainer.specs],
            "meta_train_inner_steps_per_s": meta, "plain_adam_inner_steps_per_s": adam,
            "efficiency": efficiency, "outer_step_compile_s": compile_s}
  print(json.dumps(result, indent=2))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
