"""The one inner-training loop: a task trained by any optax transformation, as a jitted lax.scan.

``train_step`` is one step (batch, loss and gradient, update); meta-training's truncated unrolls
(``metalearn.meta.unroll``) and evaluation's runs below are both built from it.
``train_curve`` runs one transformation with one seed; ``train_grid`` runs a family of
transformations indexed by a learning rate over a grid of learning rates x seeds, compiled once and
``vmap``-ed, which is how the evaluation tunes its baselines.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn.tasks.base import Task


def train_step(task: Task, tx: optax.GradientTransformation, params, opt_state, data, key):
  """One training step on a batch drawn with ``key``: returns ``(params, opt_state, loss)``.

  The loss is passed to the transformation as ``loss=`` (rules that read it use it; optax's own
  transformations need ``optax.with_extra_args_support``-style tolerance, which every metalearn
  rule has).
  """
  loss, grads = jax.value_and_grad(task.loss)(params, task.batch(data, key))
  updates, opt_state = tx.update(grads, opt_state, params, loss=loss)
  return optax.apply_updates(params, updates), opt_state, loss


def _run(task: Task, tx: optax.GradientTransformation, num_steps: int, key, data, test_data,
         num_test_batches: int = 4):
  k_init, k_train, k_test = jax.random.split(key, 3)
  params = task.init(k_init)
  opt_state = tx.init(params)
  mean_loss = lambda params, data, keys: jnp.mean(
      jax.vmap(lambda k: task.loss(params, task.batch(data, k)))(keys))
  # The initial training loss, on batches independent of the training run's.
  init_loss = mean_loss(params, data, jax.random.split(jax.random.fold_in(k_test, 1),
                                                       num_test_batches))

  def step(carry, k):
    params, opt_state, loss = train_step(task, tx, *carry, data, k)
    return (params, opt_state), loss

  (params, _), losses = jax.lax.scan(step, (params, opt_state),
                                     jax.random.split(k_train, num_steps))
  test = mean_loss(params, test_data, jax.random.split(k_test, num_test_batches))
  return losses, test, init_loss


def train_curve(task: Task, tx: optax.GradientTransformation, num_steps: int, *, seed: int = 0):
  """``{"train_loss": [num_steps], "final_test_loss": float, "diverged": bool}``."""
  fn = jax.jit(lambda key, d, td: _run(task, tx, num_steps, key, d, td))
  losses, test, _ = fn(jax.random.key(seed), task.data, task.test_data)
  losses = np.asarray(losses)
  return {"train_loss": losses, "final_test_loss": float(test),
          "diverged": bool(not np.all(np.isfinite(losses)) or not np.isfinite(float(test)))}


CONV_KINDS = ("cnn", "cnn_norm")        # batched convolutions run slowly on XLA:CPU
SEQUENCE_KINDS = ("char_lm", "rnn_lm")  # cost per token


def _has_images(task: Task) -> bool:
  try:
    return np.ndim(task.data["x"]) == 4
  except (KeyError, TypeError, IndexError):
    return False


def _cost(task: Task, num_steps: int, num_runs: int) -> float:
  """A rough multiply-add count of a grid of runs (parameters x examples x steps x runs)."""
  spec = task.spec
  per_example = max(spec.seq_len, 1) if spec.kind in SEQUENCE_KINDS else 1
  if spec.kind in CONV_KINDS:   # every weight is applied at every position of the image
    per_example = int(np.prod(np.shape(task.data["x"])[1:3])) if _has_images(task) else 64
  return float(task.num_params()) * spec.batch_size * per_example * num_steps * num_runs


def train_grid(task: Task, make_tx: Callable[[jax.Array], optax.GradientTransformation],
               num_steps: int, lrs: Sequence[float], seeds: Sequence[int], *,
               num_test_batches: int = 8, sequential: bool | None = None,
               fast_compile: bool | None = None):
  """Trains with ``make_tx(lr)`` for every ``lr`` x seed in one compiled program.

  ``make_tx`` receives a traced scalar, so it must build the transformation from it (e.g.
  ``lambda lr: optax.adam(lr)``); a learned rule ignores it (pass ``lrs=[0.0]``). Seed ``s`` gives
  the same initialization and batch order as ``train_curve(..., seed=s)``.

  The grid is ``vmap``-ed, except where ``sequential`` (default: convolutions on CPU, whose batched
  form XLA:CPU runs slower than one run after another) asks for ``lax.map``. ``fast_compile``
  (default: small programs on CPU, where LLVM's optimizations take longer than the run) compiles
  with XLA backend optimization level 0.

  Returns ``{"train_loss": [len(lrs), len(seeds), num_steps], "test_loss": [len(lrs), len(seeds)],
  "init_loss": [len(lrs), len(seeds)]}`` as float32 numpy arrays: the held-out loss of the final
  params, and the training loss of the initial params (both over ``num_test_batches`` batches).
  """
  on_cpu = jax.default_backend() == "cpu"
  if sequential is None:
    sequential = on_cpu and task.spec.kind in CONV_KINDS
  if fast_compile is None:
    fast_compile = on_cpu and not sequential and _cost(task, num_steps,
                                                       len(lrs) * len(seeds)) < 1e10

  def run(lr_key, data, test_data):
    lr, key = lr_key
    return _run(task, make_tx(lr), num_steps, key, data, test_data, num_test_batches)

  def grid(lrs, keys, data, test_data):
    num_lrs, num_seeds = lrs.shape[0], keys.shape[0]
    flat = (jnp.repeat(lrs, num_seeds), keys[jnp.tile(jnp.arange(num_seeds), num_lrs)])
    one = lambda lr_key: run(lr_key, data, test_data)
    out = jax.lax.map(one, flat) if sequential else jax.vmap(one)(flat)
    return jax.tree.map(lambda x: x.reshape(num_lrs, num_seeds, *x.shape[1:]), out)

  options = {"xla_backend_optimization_level": 0} if fast_compile else None
  keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
  losses, test, init = jax.jit(grid, compiler_options=options)(
      jnp.asarray(lrs, jnp.float32), keys, task.data, task.test_data)
  return {"train_loss": np.asarray(losses, np.float32), "test_loss": np.asarray(test, np.float32),
          "init_loss": np.asarray(init, np.float32)}


def train_curves(task: Task, tx: optax.GradientTransformation, num_steps: int, seeds: int):
  """``train_curve`` for ``seeds`` seeds at once (one compile, vmapped): arrays with a seed axis."""
  fn = jax.jit(jax.vmap(lambda key, d, td: _run(task, tx, num_steps, key, d, td),
                        in_axes=(0, None, None)))
  keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
  losses, test, _ = fn(keys, task.data, task.test_data)
  return {"train_loss": np.asarray(losses), "final_test_loss": np.asarray(test)}
