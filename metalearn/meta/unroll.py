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
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from metalearn.optimizers.base import LearnedRule
from metalearn.tasks import training
from metalearn.tasks.base import Task


class InnerState(NamedTuple):
  params: Any
  opt_state: Any
  step: jax.Array        # int32, steps done in this run
  horizon: jax.Array     # int32, this run's length (a multiple of K)
  init_loss: jax.Array   # float32, loss at initialisation (meta-loss normaliser)
  diverged: jax.Array    # bool


@dataclasses.dataclass(frozen=True)
class UnrollConfig:
  truncation_length: int = 10
  min_horizon: int = 50
  max_horizon: int = 200
  divergence_factor: float = 10.0
  meta_loss: str = "log"   # "log" or "ratio"
  remat: bool = False      # jax.checkpoint each inner step (TBPTT memory)
  stagger: bool = True     # shorten each member's first run at random to desynchronise runs


def sample_horizon(key, cfg: UnrollConfig):
  """Log-uniform between the bounds, rounded to a multiple of the truncation length."""
  k = cfg.truncation_length
  lo, hi = max(cfg.min_horizon / k, 1.0), max(cfg.max_horizon / k, 1.0)
  n = jnp.exp(jax.random.uniform(key, (), minval=jnp.log(lo), maxval=jnp.log(hi + 0.999)))
  return (jnp.floor(n).astype(jnp.int32) * k).clip(k, None)


def fresh_state(task: Task, rule: LearnedRule, theta, data, key, cfg: UnrollConfig,
                horizon=None) -> InnerState:
  """A new run at step 0; its ``init_loss`` is filled in by its first step in ``unroll``."""
  del data  # the initial loss comes from the first training step's batch
  k_init, _, k_h = jax.random.split(key, 3)
  params = task.init(k_init)
  if horizon is None:
    horizon = sample_horizon(k_h, cfg)
  opt_state = rule.as_optax(theta, num_steps=horizon).init(params)
  return InnerState(params, opt_state, jnp.zeros((), jnp.int32), horizon,
                    jnp.ones((), jnp.float32), jnp.zeros((), bool))


def _step_meta_loss(loss, init_loss, bad, cfg: UnrollConfig):
  ratio = loss / init_loss
  if cfg.meta_loss == "log":
    value, ceiling = jnp.log(jnp.maximum(ratio, 1e-6)), jnp.log(cfg.divergence_factor)
  else:
    value, ceiling = ratio, cfg.divergence_factor
  return jnp.where(bad, ceiling, jnp.minimum(value, ceiling))


def unroll(task: Task, rule: LearnedRule, theta, state: InnerState, data, key, cfg: UnrollConfig):
  """Advances one run by ``cfg.truncation_length`` steps. Returns (state, meta_loss, metrics)."""

  def step(st: InnerState, k):
    tx = rule.as_optax(theta, num_steps=st.horizon)
    params, opt_state, loss = training.train_step(task, tx, st.params, st.opt_state, data, k)
    # A run's first step measures its initial loss (the params are still the init).
    init_loss = jnp.where(st.step == 0, jnp.maximum(jax.lax.stop_gradient(loss), 1e-6),
                          st.init_loss)
    bad = st.diverged | ~jnp.isfinite(loss) | (loss > cfg.divergence_factor * init_loss)
    # A diverged run is not frozen (that would cost a select over every parameter each step): its
    # losses are clipped from here on, it is masked out of the meta-gradient, and it is restarted
    # at the end of the truncation.
    new = InnerState(params, opt_state, st.step + 1, st.horizon, init_loss, bad)
    return new, (_step_meta_loss(loss, init_loss, bad, cfg), jnp.where(bad, 0.0, loss))

  if cfg.remat:
    step = jax.checkpoint(step)
  keys = jax.random.split(key, cfg.truncation_length)
  state, (meta_losses, losses) = jax.lax.scan(step, state, keys)
  return state, jnp.mean(meta_losses), {"loss": losses[-1], "diverged": state.diverged}


def finished(state: InnerState) -> jax.Array:
  """Whether the run reached its horizon or diverged, i.e. restarts at the end of the truncation."""
  return (state.step >= state.horizon) | state.diverged


def reset_finished(task: Task, rule: LearnedRule, theta, state: InnerState, data, key,
                   cfg: UnrollConfig):
  """Restarts runs that reached their horizon or diverged. Returns (state, was_reset)."""
  done = finished(state)
  fresh = fresh_state(task, rule, jax.lax.stop_gradient(theta), data, key, cfg)
  state = jax.tree.map(lambda f, s: jnp.where(done, f, s), fresh, state)
  return state, done
