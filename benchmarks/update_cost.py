"""`tx.update` alone, each rule against optax.adamw, timed in turns in one process; plus the bytes
XLA's cost analysis says one update moves per parameter.

    python benchmarks/update_cost.py [--rounds 11] [--sets mlp,cnn,transformer,embedding,matrix]

Parameter sets: the three models of step_cost.py (their flax NNX parameters), a 50,000 x 512
embedding and a 4096 x 4096 matrix (memory bandwidth dominates there). Gradients are random and
the same for every rule; each update is one jitted call with the optimizer state donated, as in a
training step. The ratio is the median over rounds of (rule time / AdamW time in the same round).

The jitted call returns the new state before the updates. JAX gives a donated input buffer to the
first output of its shape and dtype; with the updates first (``tx.update``'s own order), the updates
took the first moment's buffer and XLA inserted two parameter-sized copies to make room, so 0.4.0
and earlier charged AdamW 56 bytes per parameter instead of its 40 (and every rule the same 16
extra bytes), which flattered the ratios. State first is what a train step does: every state
leaf is updated in place. ``*_grouped`` rows are the same rule on the grouped path
(``as_optax(..., grouped=True)``, metalearn.optimizers.grouped).
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
from metalearn.optimizers import make_rule

try:  # run as a script (python benchmarks/update_cost.py) or as a module
  from step_cost import MODELS, in_turns, median_ratio
except ImportError:
  from benchmarks.step_cost import MODELS, in_turns, median_ratio


def model_params(name):
  model = MODELS[name]()[0]
  return nnx.as_pure(nnx.state(model, nnx.Param))


SETS = {
    "mlp": lambda: model_params("mlp_784-256-256-10_b128"),
    "cnn": lambda: model_params("cnn_16-32-32_b128"),
    "transformer": lambda: model_params("transformer_2x128_T64_b32"),
    "embedding": lambda: {"embed": jnp.full((50_000, 512), 0.02, jnp.float32)},
    "matrix": lambda: {"w": jnp.full((4096, 4096), 0.01, jnp.float32)},
}


def rules(num_steps=1000):
  out = {"adamw": lambda: optax.adamw(1e-3)}
  for name in ("mlp_lopt", "hyperparam_net", "hyper_lopt"):
    def make(name=name):
      rule = make_rule(name)
      return rule.as_optax(rule.init_meta_params(jax.random.key(0)), num_steps=num_steps)
    out[name] = make
  out["default"] = lambda: ml.pretrained("default", num_steps=num_steps)
  out["default_v3"] = lambda: ml.pretrained("default_v3", num_steps=num_steps)   # 0.3.0's default
  out["default_grouped"] = lambda: ml.pretrained("default", num_steps=num_steps, grouped=True)
  return out


def compiled_update(tx, params):
  grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(1), p.shape, p.dtype) * 1e-2,
                       params)
  # Own buffers per leaf: init may hand out one zeros buffer twice, which donation refuses.
  state = jax.tree.map(lambda x: jnp.array(x, copy=True), tx.init(params))
  # (new state, updates): the state first, so each donated state leaf holds its own new value.
  fn = jax.jit(lambda g, s, p: tx.update(g, s, p, loss=jnp.float32(1.0))[::-1], donate_argnums=1)
  compiled = fn.lower(grads, state, params).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return compiled, grads, state, float((cost or {}).get("bytes accessed", float("nan")))


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--rounds", type=int, default=11)
  p.add_argument("--sets", default=",".join(SETS))
  p.add_argument("--rules", default=None, help="comma-separated subset (adamw always runs)")
  p.add_argument("--json", default=None)
  args = p.parse_args(argv)
  makers = rules()
  if args.rules:
    makers = {k: v for k, v in makers.items() if k == "adamw" or k in args.rules.split(",")}
  out = {"device": str(jax.devices()[0].device_kind), "backend": jax.default_backend(), "sets": {}}
  for set_name in args.sets.split(","):
    params = SETS[set_name]()
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    runs = {}
    for rname, make in makers.items():
      try:
        runs[rname] = list(compiled_update(make(), params))
      except Exception as e:  # noqa: BLE001  (a rule not built in this version)
        print(f"skip {rname}: {type(e).__name__}: {e}")
    # Enough calls per round for ~50 ms of AdamW work.
    c, g, s, _ = runs["adamw"]
    t = time.perf_counter()
    s, _ = c(g, s, params)
    jax.block_until_ready(s)
    runs["adamw"][2] = s
    reps = max(1, int(0.05 / max(time.perf_counter() - t, 1e-6)))
    def timer(r):
      def run():
        c, g, s, _ = runs[r]
        s, _ = c(g, s, params)   # warm, and keeps the donated state chain alive
        jax.block_until_ready(s)
        t = time.perf_counter()
        for _ in range(reps):
          s, _ = c(g, s, params)
        jax.block_until_ready(s)
        runs[r][2] = s
        return (time.perf_counter() - t) / reps
      return run

    times = in_turns({r: timer(r) for r in runs}, args.rounds)
    ratio = median_ratio(times)
    row = {r: {"median_update_ms": 1e3 * statistics.median(ts), "ratio_vs_adamw": ratio[r],
               "bytes_per_param": runs[r][3] / n} for r, ts in times.items()}
    out["sets"][set_name] = {"num_params": n, "rules": row}
    print(f"\n{set_name}: {n:,} parameters ({out['device']}, {args.rounds} rounds x {reps} calls)")
    print(f"{'rule':<16}{'update ms':>11}{'x adamw':>9}{'bytes/param':>13}")
    for r, v in row.items():
      print(f"{r:<16}{v['median_update_ms']:>11.3f}{v['ratio_vs_adamw']:>9.2f}"
            f"{v['bytes_per_param']:>13.1f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)
  return out


if __name__ == "__main__":
  main()
