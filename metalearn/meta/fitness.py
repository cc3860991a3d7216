"""Fitness of a population's rules on the meta-validation tasks (self-improvement's selection).

    fit = Fitness(config, rule, mesh)
    scores = fit.task_fitness(thetas)      # [P, T] numpy, lower is better; thetas stacked [P, ...]

Each of the ``T`` tasks (``config.eval_tasks``) is trained ``fitness_seeds`` times by every
member's rule, for that task's horizon: ``fitness_horizons[j]`` where that tuple is set (one
horizon per task, so a slow family such as a CNN can run shorter than the rest), else
``fitness_horizon``. A run's score is ``fitness_of_losses``. The seeds are the same at every
call (common random numbers), so generations compare fairly. Members are sharded over the
mesh's ``'task'`` axis like in ``population.py``; no member's score depends on the device count.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

import metalearn.parallel as parallel
from metalearn.tasks import TaskSpec, make_task
from metalearn.tasks.training import train_step


def fitness_of_losses(losses, init_loss, divergence_factor: float):
  """``log(mean of the last 10% of train losses / initial loss)``, capped at a diverged run's value.

  Lower is better; a run that diverged (non-finite, or above ``divergence_factor`` times its initial
  loss) scores ``log(divergence_factor)``.
  """
  tail = losses[-max(1, losses.shape[0] // 10):]
  ratio = jnp.mean(tail) / jnp.maximum(init_loss, 1e-12)
  ceiling = jnp.log(divergence_factor)
  ok = jnp.all(jnp.isfinite(tail)) & (ratio < divergence_factor)
  return jnp.where(ok, jnp.log(jnp.maximum(ratio, 1e-6)), ceiling)


def fitness_horizons(config) -> tuple[int, ...]:
  """The number of steps each meta-validation task is trained for (module docstring)."""
  per_task = tuple(int(h) for h in config.fitness_horizons)
  return per_task or (int(config.fitness_horizon),) * len(config.eval_tasks)


class Fitness:
  """The meta-validation tasks on the mesh and the compiled program that scores rules on them."""

  def __init__(self, config, rule, mesh, jit_options=None):
    self.config, self.rule, self.mesh = config, rule, mesh
    data_dir = config.data_dir or None
    self.specs = [TaskSpec.from_dict(dict(s)) for s in config.eval_tasks]
    self.tasks = [make_task(s, data_dir=data_dir) for s in self.specs]
    self.horizons = fitness_horizons(config)
    self.datas = [parallel.put_replicated(t.data, mesh) for t in self.tasks]
    self._rep = parallel.replicated(mesh)
    self._jit_options, self._fn = jit_options, None

  def _local(self, thetas, datas):
    """[M, T] fitness of a device's M members; seeds vmapped outside members (members outside
    hit a conv batching rule JAX lacks under shard_map: kernels batched, shared input batches)."""
    c = self.config
    scores = []
    for j, (task, data, h) in enumerate(zip(self.tasks, datas, self.horizons)):

      def run(theta, key, task=task, data=data, h=h):
        tx = self.rule.as_optax(theta, num_steps=h)
        k_init, k_train = jax.random.split(key)
        params = task.init(k_init)

        def one(carry, k):
          p, s, loss = train_step(task, tx, *carry, data, k)
          return (p, s), loss

        _, losses = jax.lax.scan(one, (params, tx.init(params)), jax.random.split(k_train, h))
        return fitness_of_losses(losses, losses[0], c.divergence_factor)
      # The same seeds every generation (common random numbers), so generations compare fairly.
      keys = jax.random.split(jax.random.fold_in(jax.random.key(c.seed + 1), j), c.fitness_seeds)
      per_seed = jax.vmap(lambda k, run=run: jax.vmap(run, in_axes=(0, None))(thetas, k))(keys)
      scores.append(jnp.mean(per_seed, axis=0))
    return jnp.stack(scores, axis=1)

  def _sharded(self, thetas, datas):
    return jax.shard_map(self._local, mesh=self.mesh, in_specs=(P(parallel.AXIS), P()),
                         out_specs=P(parallel.AXIS), check_vma=False)(thetas, datas)

  def task_fitness(self, thetas) -> np.ndarray:
    """[P, T] fitness of the stacked rules ``thetas`` on each meta-validation task (lower is
    better), each the mean over ``fitness_seeds`` runs."""
    if self._fn is None:
      self._fn = jax.jit(self._sharded, out_shardings=self._rep,
                         compiler_options=self._jit_options)
    return np.asarray(jax.device_get(self._fn(thetas, self.datas)), np.float64)
