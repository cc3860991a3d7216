"""A meta-network that generates per-tensor hyperparameters for an Adam-like base update.

Per tensor ``k`` it reads a few statistics,

    s_k = [log scale(g_k), log rms(p_k), log scale(m_k), loss trend, time embedding of t / T],

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

``scale(x) = exp(mean log|x| + 0.635)`` over the nonzero elements of ``x`` is a robust log-RMS: it
equals ``rms(x)`` for Gaussian ``x``, and one element, however large, moves it by a factor of only
``|x_i / scale|**(1/n)`` (an RMS it would move by ``|x_i| / sqrt(n)``). So one bad gradient element
barely changes its tensor's hyperparameters, and, as in Adam, every other part of an element's
update is its own. As in ``MLPLOpt``, the gradient is made safe first (NaN/Inf elements count as
zero, finite ones are clipped to 1e18), and an element whose gradient has been exactly zero since
the start (``v == 0``) gets exactly zero update. Each element's step is bounded,
``|u| <= max(step_bound * rms(p_k), exp(log_lr + schedule(t)))``: the learned multiplier (up to
``e**3 = 20``) may raise the step above the base learning rate only to 20% of the tensor's RMS, so a
layer with a large fan-in (small weights) is not thrown off in the first steps.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn.optimizers import base

NUM_STATS = 4 + base.NUM_TIME_FEATURES
GAUSSIAN_LOG_GAP = 0.635  # E[log|x|] = log(rms(x)) - 0.635 for Gaussian x


def log_scale(x):
  """``log rms(x)`` estimated robustly: the mean of ``log|x|`` over the nonzero elements + 0.635."""
  nonzero = x != 0
  total = jnp.sum(jnp.where(nonzero, jnp.log(jnp.abs(jnp.where(nonzero, x, 1.0))), 0.0))
  count = jnp.sum(nonzero.astype(jnp.float32))
  return jnp.where(count > 0, total / jnp.maximum(count, 1.0) + GAUSSIAN_LOG_GAP, np.log(1e-12))


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
  step_bound: float = 0.2  # |u| <= max(step_bound * rms(p), base lr), per element

  name: ClassVar[str] = "hyperparam_net"
  # 2: robust per-tensor gradient and momentum scales, safe gradient, zero-in-zero-out gate, step
  #    bound.
  math_version: ClassVar[int] = 2

  def __post_init__(self):
    self.check_fields(at_least={1: ("hidden_size",)}, positive=("step_bound",))

  def init_meta_params(self, key):
    h = self.hidden_size
    k1, k2 = jax.random.split(key)
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    return {
        "log_lr": f32(np.log(self.init_lr)),
        "logit_b1": f32(np.log(0.9 / 0.1)),
        "log_wd": f32(np.log(1e-5)),
        "schedule": jnp.zeros((base.NUM_TIME_FEATURES,), jnp.float32),
        # Python-float scales: a numpy scalar would promote these to float64 under jax_enable_x64.
        "w1": jax.random.normal(k1, (NUM_STATS, h), jnp.float32) * float(1 / np.sqrt(NUM_STATS)),
        "b1": jnp.zeros((h,), jnp.float32),
        "w2": jax.random.normal(k2, (h, h), jnp.float32) * float(1 / np.sqrt(h)),
        "b2": jnp.zeros((h,), jnp.float32),
        "w_out": jnp.zeros((h, 3), jnp.float32),
        "b_out": jnp.zeros((3,), jnp.float32),
    }

  def transformation(self, theta, num_steps) -> optax.GradientTransformationExtraArgs:
    rule = self

    def init_fn(params):
      zeros = lambda p: jnp.zeros(jnp.shape(p), jnp.float32)
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
      leaves_g = [base.safe_gradient(g) for g in leaves_g]
      leaves_p = treedef.flatten_up_to(params)
      leaves_m = treedef.flatten_up_to(state.mu)
      leaves_v = treedef.flatten_up_to(state.nu)
      leaves_c = treedef.flatten_up_to(state.b1_prod)

      # Per-tensor statistics, one row per tensor: a [num_tensors, NUM_STATS] matrix.
      p_rms = [base.rms(p.astype(jnp.float32)) for p in leaves_p]
      stats = jnp.stack([
          jnp.concatenate([jnp.stack([0.2 * log_scale(g), 0.2 * jnp.log(pr + 1e-12),
                                      0.2 * log_scale(m), trend]), tfeat])
          for g, pr, m in zip(leaves_g, p_rms, leaves_m)])
      hidden = jax.nn.gelu(stats @ theta["w1"] + theta["b1"])
      hidden = jax.nn.gelu(hidden @ theta["w2"] + theta["b2"]) + hidden
      out = hidden @ theta["w_out"] + theta["b_out"]
      base_log_lr = theta["log_lr"] + jnp.dot(tfeat, theta["schedule"])
      log_lr = base_log_lr + jnp.clip(out[:, 0], -6, 3)
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
        m = b1[k] * m + (1 - b1[k]) * g
        v = rule.b2 * v + (1 - rule.b2) * g * g
        c = c * b1[k]
        step_scale = -lr[k] * sqrt_bc2 / (1 - c)
        u = step_scale * m / (jnp.sqrt(v) + eps_scaled) - (lr[k] * wd[k]) * p.astype(jnp.float32)
        bound = jnp.maximum(rule.step_bound * p_rms[k], jnp.exp(base_log_lr))
        u = jnp.where(v > 0, jnp.clip(u, -bound, bound), 0.0)  # bounded; zero in, zero out
        new_u.append(u.astype(p.dtype))
        new_m.append(m)
        new_v.append(v)
        new_c.append(c)
      unflat = lambda xs: jax.tree.unflatten(treedef, xs)
      new_state = HyperparamNetState(count, unflat(new_m), unflat(new_v), unflat(new_c), loss_fast,
                                     loss_slow)
      return unflat(new_u), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
