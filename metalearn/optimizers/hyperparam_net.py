"""A meta-network that generates per-tensor hyperparameters for an Adam-like base update.

Per tensor ``k`` it reads a few statistics,

    s_k = [log rms(g_k), log rms(p_k), log rms(m_k), loss trend, time embedding of t / T],

passes them through a small MLP shared by all tensors, and outputs three numbers that set that
tensor's learning-rate multiplier, momentum and weight decay for this step:

    lr_k = exp(log_lr + schedule(t) + clip(o_0)),   beta1_k = sigmoid(logit_b1 + o_1),
    wd_k = exp(log_wd + o_2)
    m_k <- beta1_k m_k + (1 - beta1_k) g_k,   v_k <- b2 v_k + (1 - b2) g_k^2
    u_k = -lr_k (m_k / c_k) / (sqrt(v_k / (1 - b2^t)) + eps) - lr_k wd_k p_k

where ``c_k`` is the bias correction of the varying ``beta1_k`` (kept as one scalar per tensor). The
loss trend is ``log(fast EMA / slow EMA)`` of the loss passed as ``loss=``; without it the trend is
zero. All work beyond Adam's is per tensor, so a step costs about what Adam's does. The output layer
starts at zero: at ``init_meta_params`` the rule is AdamW(1e-3, b1=0.9, wd=1e-5).
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn.optimizers import base

NUM_STATS = 4 + base.NUM_TIME_FEATURES


class HyperparamNetState(NamedTuple):
  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates
  b1_prod: optax.Updates  # per-tensor product of the beta1s used so far (bias correction)
  loss_fast: jax.Array
  loss_slow: jax.Array


@dataclasses.dataclass(frozen=True)
class HyperparamNet(base.LearnedRule):
  """Per-tensor hyperparameter-generating network around an Adam-like update."""

  hidden_size: int = 32
  init_lr: float = 1e-3
  b2: float = 0.999
  eps: float = 1e-8
  name: str = "hyperparam_net"

  def __post_init__(self):
    if self.hidden_size < 1:
      raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}.")

  def config(self) -> dict:
    return dataclasses.asdict(self)

  def init_meta_params(self, key):
    h = self.hidden_size
    k1, k2 = jax.random.split(key)
    return {
        "log_lr": jnp.asarray(np.log(self.init_lr), jnp.float32),
        "logit_b1": jnp.asarray(np.log(0.9 / 0.1), jnp.float32),
        "log_wd": jnp.asarray(np.log(1e-5), jnp.float32),
        "schedule": jnp.zeros((base.NUM_TIME_FEATURES,), jnp.float32),
        "w1": jax.random.normal(k1, (NUM_STATS, h), jnp.float32) / np.sqrt(NUM_STATS),
        "b1": jnp.zeros((h,), jnp.float32),
        "w2": jax.random.normal(k2, (h, h), jnp.float32) / np.sqrt(h),
        "b2": jnp.zeros((h,), jnp.float32),
        "w_out": jnp.zeros((h, 3), jnp.float32),
        "b_out": jnp.zeros((3,), jnp.float32),
    }

  def as_optax(self, theta, *, num_steps) -> optax.GradientTransformationExtraArgs:
    base.check_num_steps(num_steps)
    self.check_meta_params(theta)
    rule = self

    def init_fn(params):
      base.check_float_params(params)
      zeros = lambda p: jnp.zeros(p.shape, jnp.float32)
      return HyperparamNetState(
          count=jnp.zeros((), jnp.int32),
          mu=jax.tree.map(zeros, params),
          nu=jax.tree.map(zeros, params),
          b1_prod=jax.tree.map(lambda p: jnp.ones((), jnp.float32), params),
          loss_fast=jnp.zeros((), jnp.float32),
          loss_slow=jnp.zeros((), jnp.float32))

    def update_fn(updates, state, params=None, *, loss=None, **extra_args):
      del extra_args
      base.require_params(params, "HyperparamNet")
      count = optax.safe_increment(state.count)
      frac = base.fraction_done(state.count, num_steps)
      tfeat = base.time_features(frac)

      if loss is None:
        loss_fast, loss_slow, trend = state.loss_fast, state.loss_slow, jnp.zeros((), jnp.float32)
      else:
        lval = jnp.asarray(loss, jnp.float32).reshape(())
        lval = jnp.where(jnp.isfinite(lval), lval, state.loss_fast)
        first = state.count == 0
        loss_fast = jnp.where(first, lval, 0.7 * state.loss_fast + 0.3 * lval)
        loss_slow = jnp.where(first, lval, 0.97 * state.loss_slow + 0.03 * lval)
        trend = jnp.clip(jnp.log((jnp.abs(loss_fast) + 1e-8) / (jnp.abs(loss_slow) + 1e-8)), -3, 3)

      leaves_g, treedef = jax.tree.flatten(updates)
      leaves_p = treedef.flatten_up_to(params)
      leaves_m = treedef.flatten_up_to(state.mu)
      leaves_v = treedef.flatten_up_to(state.nu)
      leaves_c = treedef.flatten_up_to(state.b1_prod)

      # Per-tensor statistics, one row per tensor: a [num_tensors, NUM_STATS] matrix.
      log_rms = lambda x: 0.2 * jnp.log(base.rms(x.astype(jnp.float32)) + 1e-12)
      stats = jnp.stack([
          jnp.concatenate([jnp.stack([log_rms(g), log_rms(p), log_rms(m), trend]), tfeat])
          for g, p, m in zip(leaves_g, leaves_p, leaves_m)])
      hidden = jax.nn.gelu(stats @ theta["w1"] + theta["b1"])
      hidden = jax.nn.gelu(hidden @ theta["w2"] + theta["b2"]) + hidden
      out = hidden @ theta["w_out"] + theta["b_out"]
      log_lr = theta["log_lr"] + jnp.dot(tfeat, theta["schedule"]) + jnp.clip(out[:, 0], -6, 3)
      b1 = jax.nn.sigmoid(theta["logit_b1"] + out[:, 1])
      wd = jnp.exp(theta["log_wd"] + jnp.clip(out[:, 2], -6, 6))
      lr = jnp.exp(log_lr)
      bc2 = 1 - rule.b2**count.astype(jnp.float32)
      # Adam's bias corrections folded into per-tensor scalars, so the per-element loop has one
      # divide: lr * m_hat / (sqrt(v_hat) + eps) == step_scale * m / (sqrt(v) + eps_scaled).
      sqrt_bc2 = jnp.sqrt(bc2)
      eps_scaled = rule.eps * sqrt_bc2

      new_u, new_m, new_v, new_c = [], [], [], []
      for k, (g, p, m, v, c) in enumerate(zip(leaves_g, leaves_p, leaves_m, leaves_v, leaves_c)):
        gf = g.astype(jnp.float32)
        m = b1[k] * m + (1 - b1[k]) * gf
        v = rule.b2 * v + (1 - rule.b2) * gf * gf
        c = c * b1[k]
        step_scale = -lr[k] * sqrt_bc2 / (1 - c)
        u = step_scale * m / (jnp.sqrt(v) + eps_scaled) - (lr[k] * wd[k]) * p.astype(jnp.float32)
        new_u.append(u.astype(g.dtype))
        new_m.append(m)
        new_v.append(v)
        new_c.append(c)
      unflat = lambda xs: jax.tree.unflatten(treedef, xs)
      new_state = HyperparamNetState(count, unflat(new_m), unflat(new_v), unflat(new_c), loss_fast,
                                     loss_slow)
      return unflat(new_u), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
