"""Training candidates of an architecture search, and scoring them by held-out accuracy.

    trainer = Trainer.learned("pretrained:default", num_steps=300)        # no per-candidate tuning
    trainer = Trainer.adam(lrs=[1e-3, 3e-3, 1e-2, 3e-2], num_steps=300)   # an LR grid per candidate
    out = trainer(spec)   # {"val_accuracy", "test_accuracy", "learning_rate", "steps", ...}

The training split is cut in two once, with a fixed permutation: candidates train on the first part
and are scored on the second (``validation_fraction``, default 20%), so the search never sees the
test split; the test accuracy is recorded beside it, for the final report only. A grid of learning
rates x seeds trains in one compiled, ``vmap``-ed program (``lax.map`` for convolutions on CPU, as
in ``metalearn.tasks.training.train_grid``); the learning rate whose seed-mean validation accuracy
is highest is the candidate's. ``steps`` counts every inner step spent: ``lrs x seeds x num_steps``.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn.search.batched import optimizer_family
from metalearn.tasks.base import Task, TaskSpec, make_task
from metalearn.tasks.training import train_step


def split_validation(data: dict, fraction: float, seed: int = 0) -> tuple[dict, dict]:
  """``(train, validation)`` rows of a split (a fixed permutation); token streams are cut at the
  end."""
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"validation_fraction must be in (0, 1), got {fraction}.")
  if set(data) == {"tokens"}:
    n = data["tokens"].shape[0]
    cut = int(round(n * (1 - fraction)))
    return {"tokens": data["tokens"][:cut]}, {"tokens": data["tokens"][cut:]}
  n = data["x"].shape[0]
  perm = np.random.default_rng(seed).permutation(n)
  cut = int(round(n * (1 - fraction)))
  take = lambda idx: {k: v[jnp.asarray(idx)] for k, v in data.items()}
  return take(perm[:cut]), take(perm[cut:])


@functools.lru_cache(maxsize=16)
def _splits(task: Task, fraction: float):
  return split_validation(task.data, fraction)


def train_and_score(task: Task, make_tx: Callable[[jax.Array], optax.GradientTransformation],
                    num_steps: int, lrs: Sequence[float], seeds: Sequence[int], *,
                    validation_fraction: float = 0.2) -> dict:
  """Trains ``make_tx(lr)`` for every lr x seed; returns accuracies as ``[lrs, seeds]`` arrays.

  ``{"val_accuracy", "test_accuracy", "final_loss"}``: accuracy on the validation part of the
  training split and on the test split, and the mean training loss over the last tenth of steps
  (``inf`` where a run diverged).
  """
  if task.metric_fn is None:
    raise ValueError(f"architecture search scores accuracy, and task {task.name} is not a "
                     "classifier.")
  train, val = _splits(task, float(validation_fraction))
  tail = max(1, num_steps // 10)

  def run(lr, key, train, val, test):
    k_init, k_train, k_eval = jax.random.split(key, 3)
    params = task.init(k_init)
    tx = make_tx(lr)

    def step(carry, k):
      params, state, loss = train_step(task, tx, *carry, train, k)
      return (params, state), loss

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)),
                                       jax.random.split(k_train, num_steps))
    last = jnp.mean(losses[-tail:])
    ok = jnp.isfinite(last)
    score = lambda d: jnp.where(ok, task.accuracy(params, d, k_eval), 0.0)
    return score(val), score(test), jnp.where(ok, last, jnp.inf)

  def grid(lrs, keys, train, val, test):
    nl, ns = lrs.shape[0], keys.shape[0]
    flat = (jnp.repeat(lrs, ns), keys[jnp.tile(jnp.arange(ns), nl)])
    one = lambda lk: run(lk[0], lk[1], train, val, test)
    out = jax.lax.map(one, flat) if on_cpu and conv else jax.vmap(one)(flat)
    return jax.tree.map(lambda x: x.reshape(nl, ns), out)

  # Small dense programs compile faster than they run at LLVM level 0; convolutions do not (XLA:CPU
  # then runs them as naive loops: minutes per candidate).
  on_cpu = jax.default_backend() == "cpu"
  conv = task.spec.kind in ("cnn", "cnn_norm")
  options = ({"xla_backend_optimization_level": 0} if on_cpu and not conv and task.num_params()
             * len(lrs) * len(seeds) * task.spec.batch_size * num_steps < 1e10 else None)
  keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
  val_acc, test_acc, loss = jax.jit(grid, compiler_options=options)(
      jnp.asarray(lrs, jnp.float32), keys, train, val, task.test_data)
  return {"val_accuracy": np.asarray(val_acc, np.float64),
          "test_accuracy": np.asarray(test_acc, np.float64),
          "final_loss": np.asarray(loss, np.float64)}


class Trainer:
  """Trains one candidate ``TaskSpec`` and scores it (module docstring); ``name``: its side."""

  def __init__(self, name: str, make_tx: Callable[[jax.Array], optax.GradientTransformation],
               lrs: Sequence[float], num_steps: int, *, seeds: Sequence[int] = (0,),
               validation_fraction: float = 0.2, data_dir: str | None = None):
    if num_steps < 1 or not lrs or not seeds:
      raise ValueError(f"trainer {name}: need num_steps >= 1, a learning rate and a seed; got "
                       f"{num_steps}, {list(lrs)}, {list(seeds)}.")
    self.name, self.make_tx, self.lrs = name, make_tx, [float(x) for x in lrs]
    self.num_steps, self.seeds = int(num_steps), [int(s) for s in seeds]
    self.validation_fraction, self.data_dir = validation_fraction, data_dir

  @classmethod
  def learned(cls, source: str, num_steps: int, **kw) -> "Trainer":
    """A learned rule (any source ``metalearn.artifacts.resolve`` takes), told the horizon."""
    import metalearn.artifacts as artifacts
    rule, theta, _ = artifacts.resolve(source)
    return cls("learned", lambda lr: rule.as_optax(theta, num_steps=num_steps), [0.0], num_steps,
               **kw)

  @classmethod
  def adam(cls, lrs: Sequence[float], num_steps: int, optimizer: str = "adam",
           **kw) -> "Trainer":
    """A baseline (``adam``, ``adamw``, ``sgdm``, ``lion``) with a learning-rate grid."""
    family = optimizer_family(optimizer, num_steps)
    return cls(optimizer, lambda lr: family({"learning_rate": lr}), lrs, num_steps, **kw)

  @property
  def steps_per_candidate(self) -> int:
    return len(self.lrs) * len(self.seeds) * self.num_steps

  def __call__(self, spec: TaskSpec) -> dict:
    task = make_task(spec, self.data_dir)
    out = train_and_score(task, self.make_tx, self.num_steps, self.lrs, self.seeds,
                          validation_fraction=self.validation_fraction)
    val = out["val_accuracy"].mean(1)
    best = int(np.argmax(val))
    return {"val_accuracy": float(val[best]),
            "test_accuracy": float(out["test_accuracy"].mean(1)[best]),
            "learning_rate": self.lrs[best], "final_loss": float(out["final_loss"].mean(1)[best]),
            "val_accuracy_per_lr": [float(v) for v in val],
            "steps": self.steps_per_candidate, "num_params": task.num_params(),
            "task": spec.to_dict()}
