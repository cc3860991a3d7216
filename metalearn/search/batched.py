"""Many trials of one shape trained together: a vector of hyperparameters, one vmapped jitted scan.

    tx_family = optimizer_family("adamw", num_steps=300)      # (hparams of traced scalars) -> tx
    run = BatchRun(task, tx_family, num_steps=300, num_chunks=4)
    out = run(hparams={"learning_rate": [1e-3, 3e-3], "weight_decay": [0., 1e-4]}, seeds=[0],
              on_chunk=lambda step, losses, alive: losses > 2.0)   # -> which to stop (pruning)

Members (trials x seeds) are ``vmap``-ed and the steps are a ``lax.scan``, in chunks: after each
chunk, ``on_chunk`` sees every live member's mean training loss over that chunk and says which to
stop; the stopped members are dropped from the next chunk (the batch is re-packed to the next power
of two, so a study compiles a handful of shapes, not one per count of survivors). Seed ``s`` gives
the same initialisation and batch order as ``metalearn.tasks.training.train_curve(seed=s)``.
With a ``mesh``, members are padded to a multiple of its devices and sharded over its ``'task'``
axis (the compiler partitions the vmapped program).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import metalearn.parallel as parallel
from metalearn.tasks.base import Task
from metalearn.tasks.training import train_step

# Hyperparameters every family understands, with the value used when a search leaves one out.
DEFAULTS = {"learning_rate": 1e-3, "warmup": 0.0, "decay": 0.0, "weight_decay": 0.0,
            "b1": 0.9, "b2": 0.999, "momentum": 0.9}


def schedule(lr, warmup, decay, num_steps: int):
  """Linear warmup over a fraction ``warmup`` of the run, then cosine decay by a fraction ``decay``.

  ``lr_t = lr * min(1, (t + 1) / (warmup T)) * (1 - decay (1 - cos(pi t / T)) / 2)``; all three
  may be traced scalars, so one compiled program serves every value.
  """
  def fn(count):
    t = jnp.asarray(count, jnp.float32)
    warm = jnp.clip((t + 1.0) / jnp.maximum(warmup * num_steps, 1.0), 0.0, 1.0)
    cos = 1.0 - decay * 0.5 * (1.0 - jnp.cos(jnp.pi * jnp.clip(t / num_steps, 0.0, 1.0)))
    return lr * warm * cos
  return fn


def optimizer_family(name: str, num_steps: int) -> Callable[[Mapping], optax.GradientTransformation]:
  """``hparams -> tx`` for ``adamw``, ``adam``, ``sgdm`` or ``lion``, each with the schedule."""
  def make(h):
    h = {**DEFAULTS, **h}
    lr = schedule(h["learning_rate"], h["warmup"], h["decay"], num_steps)
    if name in ("adamw", "adam"):
      return optax.adamw(lr, b1=h["b1"], b2=h["b2"], weight_decay=h["weight_decay"])
    if name == "sgdm":
      return optax.chain(optax.add_decayed_weights(h["weight_decay"]),
                         optax.sgd(lr, momentum=h["momentum"]))
    if name == "lion":
      return optax.lion(lr, b1=h["b1"], b2=h["b2"], weight_decay=h["weight_decay"])
    raise ValueError(f"unknown optimizer {name!r}; choose one of {FAMILIES}.")
  if name not in FAMILIES:
    raise ValueError(f"unknown optimizer {name!r}; choose one of {FAMILIES}.")
  return make


FAMILIES = ("adamw", "adam", "sgdm", "lion")


def _next_pow2(n: int) -> int:
  return 1 << max(0, (n - 1).bit_length())


class BatchRun:
  """Trains members of ``tx_family(hparams)`` on ``task`` in ``num_chunks`` chunks (module doc)."""

  def __init__(self, task: Task, tx_family, num_steps: int, *, num_chunks: int = 4,
               num_test_batches: int = 8, mesh=None):
    if num_steps < 1 or not 1 <= num_chunks <= num_steps:
      raise ValueError(f"need num_steps >= 1 and 1 <= num_chunks <= num_steps, got {num_steps}, "
                       f"{num_chunks}.")
    self.task, self.family, self.num_steps = task, tx_family, int(num_steps)
    self.bounds = np.linspace(0, num_steps, num_chunks + 1).round().astype(int)
    self.num_test_batches = num_test_batches
    self.mesh = mesh if mesh is not None and mesh.devices.size > 1 else None
    self.num_devices = self.mesh.devices.size if self.mesh is not None else 1
    on_cpu = jax.default_backend() == "cpu"
    small = task.num_params() * task.spec.batch_size * num_steps < 1e9
    opts = {"xla_backend_optimization_level": 0} if on_cpu and small else None
    self._init = jax.jit(jax.vmap(self._init_one), compiler_options=opts)
    self._chunk = jax.jit(jax.vmap(self._chunk_one, in_axes=(0, 0, 0, None)),
                          compiler_options=opts)
    self._test = jax.jit(jax.vmap(self._test_one, in_axes=(0, 0, None)), compiler_options=opts)

  def _init_one(self, hparams, key):
    k_init, k_train, k_test = jax.random.split(key, 3)
    params = self.task.init(k_init)
    state = self.family(hparams).init(params)
    init_loss = self._mean_loss(params, self.task.data, jax.random.fold_in(k_test, 1))
    return params, state, jax.random.split(k_train, self.num_steps), k_test, init_loss

  def _chunk_one(self, hparams, carry, keys, data):
    tx = self.family(hparams)

    def step(carry, k):
      params, state, loss = train_step(self.task, tx, *carry, data, k)
      return (params, state), loss

    return jax.lax.scan(step, carry, keys)

  def _mean_loss(self, params, data, key):
    keys = jax.random.split(key, self.num_test_batches)
    return jnp.mean(jax.vmap(lambda k: self.task.loss(params, self.task.batch(data, k)))(keys))

  def _test_one(self, params, key, data):
    return self._mean_loss(params, data, key)

  def __call__(self, hparams: Mapping[str, Sequence[float]], seeds: Sequence[int] = (0,),
               on_chunk: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None = None) -> dict:
    """Trains every hyperparameter vector x seed; returns per-trial arrays (NaN where stopped).

    ``on_chunk(step, losses[trials], alive[trials]) -> stop[trials]`` (booleans; losses are the
    seed-mean training loss over the chunk, ``inf`` for diverged runs). Returns
    ``{"test_loss", "train_loss", "mean_train_loss", "init_loss", "steps"}``: final held-out
    loss, mean training loss over the last chunk and over the whole run (how fast it learns),
    training loss at initialisation, steps trained (per trial).
    """
    names = sorted(hparams)
    cols = [np.asarray(hparams[n], np.float32).reshape(-1) for n in names]
    num_trials = len(cols[0]) if cols else 0
    if num_trials == 0 or any(len(c) != num_trials for c in cols):
      raise ValueError(f"hparams must be equal-length non-empty vectors, got "
                       f"{ {n: len(c) for n, c in zip(names, cols)} }.")
    num_seeds = len(seeds)
    trial_of = np.repeat(np.arange(num_trials), num_seeds)      # member -> trial
    h = {n: jnp.asarray(np.repeat(c, num_seeds)) for n, c in zip(names, cols)}
    keys = jnp.stack([jax.random.key(int(s)) for s in np.tile(seeds, num_trials)])
    rows = np.arange(len(trial_of))                             # the members still training
    members = self._pad(rows)                                   # row -> member, -1 for padding
    h, keys = self._place(jax.tree.map(lambda x: x[np.maximum(members, 0)], (h, keys)))
    params, state, step_keys, test_keys, init_loss = self._init(h, keys)
    init_loss = np.asarray(init_loss)[members >= 0]
    carry = (params, state)
    alive = np.ones(num_trials, bool)
    steps = np.zeros(num_trials, int)
    last = np.full(len(trial_of), np.nan, np.float32)
    total = np.zeros(len(trial_of), np.float64)    # sum of chunk means x chunk lengths
    test = np.full(len(trial_of), np.nan, np.float32)
    for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
      carry, losses = self._chunk(h, carry, step_keys[:, lo:hi], self.task.data)
      real = members >= 0
      losses = np.asarray(losses, np.float32)[real]
      last[members[real]] = np.where(np.isfinite(losses).all(1), losses.mean(1), np.inf)
      total[members[real]] += last[members[real]] * (hi - lo)
      steps[alive] = hi
      per_trial = np.array([np.mean(last[trial_of == t]) if alive[t] else np.nan
                            for t in range(num_trials)])
      stop = np.zeros(num_trials, bool)
      if on_chunk is not None and hi < self.num_steps:
        stop = np.asarray(on_chunk(int(hi), per_trial, alive.copy()), bool) & alive
      finished = stop if hi < self.num_steps else alive
      if finished.any():   # held-out loss of the runs that end here
        done = real & finished[trial_of[np.maximum(members, 0)]]
        t = np.asarray(self._test(carry[0], test_keys, self.task.test_data))
        test[members[done]] = t[done]
      alive &= ~stop
      if hi == self.num_steps or not alive.any():
        break
      if stop.any():   # drop the stopped members: gather the survivors, padded again
        keep = np.flatnonzero(real & alive[trial_of[np.maximum(members, 0)]])
        take = self._pad(keep, fill=keep[0])
        members = np.where(np.arange(len(take)) < len(keep), members[take], -1)
        carry, h, step_keys, test_keys = self._place(jax.tree.map(
            lambda x: x[jnp.asarray(take)], (carry, h, step_keys, test_keys)))
    per_trial = lambda x: x.reshape(num_trials, num_seeds).mean(1)
    mean = total / np.repeat(np.maximum(steps, 1), num_seeds)
    return {"test_loss": per_trial(test), "train_loss": per_trial(last),
            "mean_train_loss": per_trial(mean.astype(np.float32)),
            "init_loss": per_trial(init_loss.astype(np.float32)), "steps": steps}

  def _pad(self, rows: np.ndarray, fill: int = -1) -> np.ndarray:
    """``rows`` padded to a power of two that the devices divide (fill: the padding's value)."""
    size = _next_pow2(len(rows))
    size = -(-size // self.num_devices) * self.num_devices
    return np.concatenate([rows, np.full(size - len(rows), fill, rows.dtype)])

  def _place(self, tree):
    """Shards the member axis over the mesh (if any); a no-op on one device."""
    if self.mesh is None:
      return tree
    return jax.device_put(tree, parallel.population_sharding(self.mesh))
