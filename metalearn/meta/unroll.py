"""Truncated inner training: one inner run advanced ``K`` steps with ``lax.scan``.

An inner run is an ``InnerState`` (params, optimizer state, step, horizon, ...). ``unroll`` advances
it by one truncation at meta-parameters ``theta`` and returns the truncation's meta-loss:

    meta_loss = mean_k  log(loss_k / loss_0)          (meta_loss="log", the default)
    meta_loss = mean_k  loss_k / loss_0               (meta_loss="ratio")

where ``loss_0`` is the run's loss at initialisation (measured by its first training step, on that
step's batch, so starting a run costs no extra forward pass), so tasks of different loss scales
count alike.

A run whose loss turns non-finite or exceeds ``divergence_factor * loss_0`` is marked diverged
inside the scan: from then on its losses are clipped, the estimator masks it out of the
meta-gradient, and it restarts at the end of the truncation. ``reset_finished`` restarts finished
or diverged runs with a fresh init and a freshly sampled horizon; horizons are multiples of ``K``,
so runs end on truncation boundaries and no reset is needed inside the scan.

Weight-scale augmentation (``UnrollConfig.weight_scale``, off by default): each run draws a scale
``s`` log-uniformly in the range and trains ``q = p / s`` on the loss ``L(s q)``, so the rule sees
parameters ``1/s`` and gradients ``s`` times the task's own and cannot memorise one scale.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metalearn.optimizers.base import LearnedRule, rule_as_optax
from metalearn.tasks import training
from metalearn.tasks.base import Task


class InnerState(NamedTuple):
  params: Any
  opt_state: Any
  step: jax.Array        # int32, steps done in this run
  horizon: jax.Array     # int32, this run's length (a multiple of K)
  init_loss: jax.Array   # float32, loss at initialisation (meta-loss normaliser)
  diverged: jax.Array    # bool
  scale: jax.Array       # float32, the run's weight scale s (1 without augmentation)


@dataclasses.dataclass(frozen=True)
class UnrollConfig:
  truncation_length: int = 10
  min_horizon: int = 50
  max_horizon: int = 200
  divergence_factor: float = 10.0
  meta_loss: str = "log"   # "log" or "ratio"
  remat: bool = False      # jax.checkpoint each inner step (TBPTT memory)
  stagger: bool = True     # shorten each member's first run at random to desynchronise runs
  weight_scale: tuple[float, float] = (1.0, 1.0)   # log-uniform range of s (see module doc)
  grouped: bool = False    # the rule's grouped update path (as_optax(grouped=True)): speed only


@dataclasses.dataclass(frozen=True)
class Problem:
  """What an estimator works on: a task, the rule, the unroll config and the task's data.

  Built inside the traced outer step (``data`` is the device-resident dataset passed to it), so
  the estimator's methods take ``(problem, theta, state, key)`` and nothing else.
  """
  task: Task
  rule: LearnedRule
  cfg: UnrollConfig
  data: Any


def sample_horizon(key, cfg: UnrollConfig):
  """Log-uniform between the bounds, rounded to a multiple of the truncation length."""
  k = cfg.truncation_length
  lo, hi = max(cfg.min_horizon / k, 1.0), max(cfg.max_horizon / k, 1.0)
  n = jnp.exp(jax.random.uniform(key, (), minval=jnp.log(lo), maxval=jnp.log(hi + 0.999)))
  return (jnp.floor(n).astype(jnp.int32) * k).clip(k, None)


def _sample_scale(key, cfg: UnrollConfig):
  lo, hi = (float(x) for x in cfg.weight_scale)
  if lo == hi == 1.0:
    return jnp.ones((), jnp.float32)
  return jnp.exp(jax.random.uniform(key, (), minval=jnp.log(lo), maxval=jnp.log(hi)))


def fresh_state(problem: Problem, theta, key, horizon=None) -> InnerState:
  """A new run at step 0; its ``init_loss`` is filled in by its first step in ``unroll``."""
  k_init, k_scale, k_h = jax.random.split(key, 3)
  scale = _sample_scale(k_scale, problem.cfg)
  params = jax.tree.map(lambda p: p / scale.astype(p.dtype), problem.task.init(k_init))
  if horizon is None:
    horizon = sample_horizon(k_h, problem.cfg)
  opt_state = rule_as_optax(problem.rule, theta, num_steps=horizon,
                            grouped=problem.cfg.grouped).init(params)
  return InnerState(params, opt_state, jnp.zeros((), jnp.int32), horizon,
                    jnp.ones((), jnp.float32), jnp.zeros((), bool), scale)


def _step_meta_loss(loss, init_loss, bad, cfg: UnrollConfig):
  ratio = loss / init_loss
  if cfg.meta_loss == "log":
    value, ceiling = jnp.log(jnp.maximum(ratio, 1e-6)), jnp.log(cfg.divergence_factor)
  else:
    value, ceiling = ratio, cfg.divergence_factor
  return jnp.where(bad, ceiling, jnp.minimum(value, ceiling))


@dataclasses.dataclass(frozen=True)
class _Rescaled:
  """``task`` reparameterised as ``p = scale * q``: what ``training.train_step`` needs of a task."""
  task: Task
  scale: jax.Array

  def batch(self, data, key):
    return self.task.batch(data, key)

  def loss(self, q, batch):
    return self.task.loss(jax.tree.map(lambda x: x * self.scale.astype(x.dtype), q), batch)


def unroll(problem: Problem, theta, state: InnerState, key):
  """Advances one run by ``cfg.truncation_length`` steps. Returns (state, meta_loss, metrics)."""
  cfg, rule = problem.cfg, problem.rule
  augmented = tuple(cfg.weight_scale) != (1.0, 1.0)
  task = _Rescaled(problem.task, state.scale) if augmented else problem.task

  def step(st: InnerState, k):
    tx = rule_as_optax(rule, theta, num_steps=st.horizon, grouped=cfg.grouped)
    params, opt_state, loss = training.train_step(task, tx, st.params, st.opt_state,
                                                  problem.data, k)
    # A run's first step measures its initial loss (the params are still the init).
    init_loss = jnp.where(st.step == 0, jnp.maximum(jax.lax.stop_gradient(loss), 1e-6),
                          st.init_loss)
    bad = st.diverged | ~jnp.isfinite(loss) | (loss > cfg.divergence_factor * init_loss)
    # A diverged run is not frozen (that would cost a select over every parameter each step): its
    # losses are clipped from here on, it is masked out of the meta-gradient, and it is restarted
    # at the end of the truncation.
    new = st._replace(params=params, opt_state=opt_state, step=st.step + 1, init_loss=init_loss,
                      diverged=bad)
    return new, (_step_meta_loss(loss, init_loss, bad, cfg), jnp.where(bad, 0.0, loss))

  if cfg.remat:
    step = jax.checkpoint(step)
  keys = jax.random.split(key, cfg.truncation_length)
  state, (meta_losses, losses) = jax.lax.scan(step, state, keys)
  return state, jnp.mean(meta_losses), {"loss": losses[-1], "diverged": state.diverged}


def finished(state: InnerState) -> jax.Array:
  """Whether the run reached its horizon or diverged, i.e. restarts at the end of the truncation."""
  return (state.step >= state.horizon) | state.diverged


def reset_finished(problem: Problem, theta, state: InnerState, key):
  """Restarts runs that reached their horizon or diverged. Returns (state, was_reset)."""
  done = finished(state)
  fresh = fresh_state(problem, jax.lax.stop_gradient(theta), key)
  state = jax.tree.map(lambda f, s: jnp.where(done, f, s), fresh, state)
  return state, done
