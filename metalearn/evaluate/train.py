"""Training a task from scratch with any optax transformation, as one jitted lax.scan."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn.tasks.base import Task


def _run(task: Task, tx: optax.GradientTransformation, num_steps: int, key, data, test_data):
  k_init, k_train, k_test = jax.random.split(key, 3)
  params = task.init(k_init)
  opt_state = tx.init(params)

  def step(carry, k):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(task.loss)(params, task.batch(data, k))
    updates, opt_state = tx.update(grads, opt_state, params, loss=loss)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(step, (params, opt_state),
                                     jax.random.split(k_train, num_steps))
  keys = jax.random.split(k_test, 4)
  test = jnp.mean(jax.vmap(lambda k: task.loss(params, task.batch(test_data, k)))(keys))
  return losses, test


def train_curve(task: Task, tx: optax.GradientTransformation, num_steps: int, *, seed: int = 0):
  """``{"train_loss": [num_steps], "final_test_loss": float, "diverged": bool}``."""
  fn = jax.jit(lambda key, d, td: _run(task, tx, num_steps, key, d, td))
  losses, test = fn(jax.random.key(seed), task.data, task.test_data)
  losses = np.asarray(losses)
  return {"train_loss": losses, "final_test_loss": float(test),
          "diverged": bool(not np.all(np.isfinite(losses)) or not np.isfinite(float(test)))}
