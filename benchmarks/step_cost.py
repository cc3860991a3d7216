"""Train-step cost of each learned rule relative to optax.adamw, timed in turns in one process.

    python benchmarks/step_cost.py [--rounds 15] [--steps 10] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import metalearn as ml
from metalearn.tasks import models


def mlp_model():
  return models.MLP(784, (256, 256), 10, "relu", rngs=nnx.Rngs(0)), (128, 784), 10


def cnn_model():
  return models.CNN(1, (16, 32, 32), 10, "relu", rngs=nnx.Rngs(0)), (128, 28, 28, 1), 10


def transformer_model():
  m = models.CharTransformer(98, 64, 128, 2, 4, rngs=nnx.Rngs(0))
  return m, (32, 64), 98


MODELS = {"mlp_784-256-256-10_b128": mlp_model, "cnn_16-32-32_b128": cnn_model,
          "transformer_2x128_T64_b32": transformer_model}


def make_step(model_fn, tx):
  model, xshape, classes = model_fn()
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, state = nnx.split((model, opt))
  key = jax.random.key(0)
  if len(xshape) == 2 and classes == 98:
    x = jax.random.randint(key, xshape, 0, classes)
    y = jax.random.randint(key, xshape, 0, classes)
  else:
    x = jax.random.normal(key, xshape)
    y = jax.random.randint(key, xshape[:1], 0, classes)

  @jax.jit
  def step(state):
    model, opt = nnx.merge(graphdef, state)
    def loss_fn(m):
      return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads, loss=loss)
    return nnx.state((model, opt)), loss

  return step, state, opt


def state_floats_per_param(opt, model_params: int) -> float:
  leaves = jax.tree.leaves(nnx.state(opt.opt_state))
  floats = sum(int(np.prod(x.shape)) for x in leaves if jnp.issubdtype(x.dtype, jnp.floating))
  return floats / model_params


def in_turns(timers, rounds, seed=0):
  """Calls every ``timers[name]() -> seconds`` once per round, in a shuffled order each round, so
  machine noise and position effects hit every entry alike. Returns name -> list of seconds."""
  times = {name: [] for name in timers}
  order = list(timers)
  rng = np.random.default_rng(seed)
  for _ in range(rounds):
    rng.shuffle(order)
    for name in order:
      times[name].append(timers[name]())
  return times


def median_ratio(times, base="adamw"):
  """name -> median over rounds of (its time / ``base``'s time in the same round). Each ratio pairs
  two runs timed moments apart, which cancels the slow load drift of a shared machine better than
  a ratio of medians."""
  return {name: statistics.median(t / b for t, b in zip(ts, times[base]))
          for name, ts in times.items()}


def time_steps(step, state, n):
  state, loss = step(state)
  jax.block_until_ready(loss)
  t = time.perf_counter()
  for _ in range(n):
    state, loss = step(state)
  jax.block_until_ready(loss)
  return (time.perf_counter() - t) / n, state


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--rounds", type=int, default=15)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--models", default=",".join(MODELS))
  p.add_argument("--json", default=None)
  p.add_argument("--rules", default="", help="comma-separated subset of the rules (adamw always)")
  args = p.parse_args(argv)
  rules = {
      "adamw": lambda: optax.adamw(1e-3),
      "MLPLOpt": lambda: ml.optimizers.MLPLOpt().as_optax(
          ml.optimizers.MLPLOpt().init_meta_params(jax.random.key(0)), num_steps=1000),
      "HyperparamNet": lambda: ml.optimizers.HyperparamNet().as_optax(
          ml.optimizers.HyperparamNet().init_meta_params(jax.random.key(0)), num_steps=1000),
  }
  rules["HyperLOpt"] = lambda: ml.optimizers.HyperLOpt().as_optax(
      ml.optimizers.HyperLOpt().init_meta_params(jax.random.key(0)), num_steps=1000)
  try:
    rules["pretrained:default"] = lambda: ml.pretrained("default", num_steps=1000)
    rules["pretrained:default_grouped"] = lambda: ml.pretrained("default", num_steps=1000,
                                                                grouped=True)
  except Exception:
    pass
  if args.rules:
    keep = {"adamw", *args.rules.split(",")}
    rules = {k: v for k, v in rules.items() if k in keep}
  results = {"device": str(jax.devices()[0].device_kind), "backend": jax.default_backend(),
             "models": {}}
  for mname in args.models.split(","):
    steps, states, floats = {}, {}, {}
    for rname, make in rules.items():
      try:
        tx = make()
      except Exception as e:  # e.g. no pretrained shipped yet
        print(f"skip {rname}: {e}")
        continue
      step, state, opt = make_step(MODELS[mname], tx)
      nparams = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(opt.model, nnx.Param))) \
          if hasattr(opt, "model") else None
      if nparams is None:
        model, _, _ = MODELS[mname]()
        nparams = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
      steps[rname], states[rname] = step, state
      floats[rname] = state_floats_per_param(opt, nparams)
    def timer(r):
      def run():
        dt, states[r] = time_steps(steps[r], states[r], args.steps)
        return dt
      return run

    times = in_turns({r: timer(r) for r in steps}, args.rounds)
    med = {r: statistics.median(v) for r, v in times.items()}
    ratio = median_ratio(times)
    row = {r: {"median_step_ms": 1e3 * med[r], "ratio_vs_adamw": ratio[r],
               "state_floats_per_param": floats[r]} for r in med}
    results["models"][mname] = row
    print(f"\n{mname} ({results['device']})")
    print(f"{'rule':<20}{'step ms':>10}{'x adamw':>10}{'state/param':>13}")
    for r, v in row.items():
      print(f"{r:<20}{v['median_step_ms']:>10.3f}{v['ratio_vs_adamw']:>10.2f}"
            f"{v['state_floats_per_param']:>13.2f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == "__main__":
  main()
