"""A per-parameter MLP learned optimizer that costs about what Adam costs.

For every parameter ``p`` with gradient ``g`` the rule keeps two momenta ``m_a`` (decay 0.9) and
``m_b`` (decay 0.99) and an Adafactor-style second moment ``v`` (row and column factors for
matrices, so its state is ~2 floats per parameter). With ``r = rsqrt(v_hat + eps)`` the features are

    f = clip([g r, m_a r, m_b r, p / rms(p)], -clip, clip)

A tiny MLP (``hidden_size`` ReLU units, 4 by default) reads ``f`` plus a per-tensor bias made from
an embedding of the fraction of training done and the tensor's log-RMS, and outputs a direction ``d`` and a
log-magnitude ``s``. The step is

    u = -lr * exp(schedule(t)) * pexp(s) * (m_a_hat r + alpha * d) - lr * wd * p

where ``pexp(s) = (1 + s/32)**32`` with ``s`` clipped to [-6, 3] is a positive, monotone,
exponential-like map that costs five multiplies instead of an ``exp`` (within 2% of ``exp`` for
``|s| <= 1``; 0.53x of it at -6 and 0.88x at 3). ``lr``, ``wd``, ``alpha`` and ``schedule`` (a
linear map of the time embedding) are meta-parameters too. The MLP's output layer starts at zero,
so at ``init_meta_params`` the rule is Adam(lr=1e-3) with factored second moments, and
meta-training starts from a working optimizer.

The MLP is written out per hidden unit as elementwise arithmetic, so that XLA fuses the whole
update of a tensor into one loop instead of issuing a skinny matmul per tensor. Scalars are folded
before the loop and the factored ``r`` is a row-by-column product, so the loop has no divide, rsqrt
or exp — this is what makes the step cost close to Adam's.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn.optimizers import base

NUM_TENSOR_FEATURES = base.NUM_TIME_FEATURES + 1


def pexp(s):
  """``(1 + s/32)**32`` on ``s`` clipped to [-6, 3]: a cheap positive stand-in for ``exp(s)``.

  ``exp`` is the costliest op of the per-element loop on XLA:CPU; five squarings are not.
  """
  y = 1.0 + jnp.clip(s, -6.0, 3.0) * (1.0 / 32)
  for _ in range(5):
    y = y * y
  return y


class MLPLOptState(NamedTuple):
  count: jax.Array
  momenta: optax.Updates   # per tensor [2, *shape]: the fast and the slow momentum, one array
  v_row: optax.Updates
  v_col: optax.Updates


@dataclasses.dataclass(frozen=True)
class MLPLOpt(base.LearnedRule):
  """Per-parameter MLP learned optimizer (see module docstring for the math)."""

  hidden_size: int = 4
  init_lr: float = 1e-3
  fast_decay: float = 0.9
  slow_decay: float = 0.99
  second_moment_decay: float = 0.999
  eps: float = 1e-8
  feature_clip: float = 5.0
  factored: bool = True          # Adafactor-style row/col second moments for matrices
  param_feature: bool = True     # feed p / rms(p) to the MLP (one extra reduction per tensor)
  grad_feature: bool = True      # feed g * rsqrt(v) to the MLP
  name: str = "mlp_lopt"
  # 2: the step magnitude uses pexp (five squarings) instead of exp.
  math_version = 2  # a class attribute, not a dataclass field

  def __post_init__(self):
    if self.hidden_size < 1:
      raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}.")
    if not self.init_lr > 0:
      raise ValueError(f"init_lr must be > 0, got {self.init_lr}.")

  @property
  def num_features(self) -> int:
    return 2 + int(self.grad_feature) + int(self.param_feature)

  def config(self) -> dict:
    return {k: v for k, v in dataclasses.asdict(self).items()}

  def init_meta_params(self, key):
    k1, k2 = jax.random.split(key)
    h = self.hidden_size
    return {
        "log_lr": jnp.asarray(np.log(self.init_lr), jnp.float32),
        "log_wd": jnp.asarray(np.log(1e-5), jnp.float32),
        "log_alpha": jnp.asarray(np.log(0.1), jnp.float32),
        "schedule": jnp.zeros((base.NUM_TIME_FEATURES,), jnp.float32),
        "w_in": jax.random.normal(k1, (self.num_features, h), jnp.float32)
                / np.sqrt(self.num_features),
        "w_tensor": jax.random.normal(k2, (NUM_TENSOR_FEATURES, h), jnp.float32)
                    / np.sqrt(NUM_TENSOR_FEATURES),
        "b_hidden": jnp.zeros((h,), jnp.float32),
        "w_out": jnp.zeros((h, 2), jnp.float32),
        "b_out": jnp.zeros((2,), jnp.float32),
    }

  def as_optax(self, theta, *, num_steps) -> optax.GradientTransformationExtraArgs:
    base.check_num_steps(num_steps)
    self.check_meta_params(theta)
    rule = self

    def init_fn(params):
      base.check_float_params(params)
      zeros = lambda p: jnp.zeros((2,) + p.shape, jnp.float32)
      v = jax.tree.map(lambda p: base.init_second_moment(p, rule.factored), params)
      is_pair = lambda x: isinstance(x, tuple)
      return MLPLOptState(
          count=jnp.zeros((), jnp.int32),
          momenta=jax.tree.map(zeros, params),
          v_row=jax.tree.map(lambda t: t[0], v, is_leaf=is_pair),
          v_col=jax.tree.map(lambda t: t[1], v, is_leaf=is_pair))

    def update_fn(updates, state, params=None, **extra_args):
      del extra_args  # `loss` and any other extras are accepted and not needed
      base.require_params(params, "MLPLOpt")
      count = optax.safe_increment(state.count)
      frac = base.fraction_done(state.count, num_steps)
      tfeat = base.time_features(frac)
      lr = jnp.exp(theta["log_lr"] + jnp.dot(tfeat, theta["schedule"]))
      wd = jnp.exp(theta["log_wd"])
      alpha = jnp.exp(theta["log_alpha"])
      t = count.astype(jnp.float32)
      bc_fast = 1 - rule.fast_decay**t
      bc_v = 1 - rule.second_moment_decay**t
      # The per-tensor part of the hidden pre-activation from the time embedding (shared).
      hidden_time = jnp.dot(tfeat, theta["w_tensor"][:base.NUM_TIME_FEATURES]) + theta["b_hidden"]

      # Scalars folded once per step so the per-element loop does the least arithmetic:
      # u = mag * (adam_scale * (m_a r) + sum_j relu(h_j) w_dir_j + b_dir) + wd_scale * p.
      adam_scale = -lr / bc_fast
      w_dir = -lr * alpha * theta["w_out"][:, 0]
      b_dir = -lr * alpha * theta["b_out"][0]
      wd_scale = -lr * wd
      c = rule.feature_clip

      decays = jnp.array([rule.fast_decay, rule.slow_decay], jnp.float32)

      def leaf(g, p, m, vr, vc):
        g = g.astype(jnp.float32)
        pf = p.astype(jnp.float32)
        # Both momenta in one pass over g (one loop, one array), not two.
        d = decays.reshape((2,) + (1,) * g.ndim)
        m = d * m + (1 - d) * g[None]
        mf, ms = m[0], m[1]
        vr, vc = base.update_second_moment((vr, vc), g, rule.second_moment_decay,
                                           rule.factored)
        r = base.second_moment_rsqrt((vr, vc), g.shape, bc_v, rule.eps, rule.factored)
        mf_r = mf * r
        feats = [jnp.clip(mf_r, -c, c), jnp.clip(ms * r, -c, c)]
        if rule.grad_feature:
          feats.insert(0, jnp.clip(g * r, -c, c))
        tensor_bias = hidden_time
        if rule.param_feature:
          p_rms = base.rms(pf)
          feats.append(jnp.clip(pf * (1.0 / (p_rms + 1e-8)), -c, c))
          tensor_bias = tensor_bias + theta["w_tensor"][-1] * (0.2 * jnp.log(p_rms + 1e-8))
        direction = b_dir
        log_mag = theta["b_out"][1]
        for j in range(rule.hidden_size):  # unrolled so XLA fuses it into one elementwise loop
          pre = tensor_bias[j]
          for i in range(len(feats)):
            pre = pre + feats[i] * theta["w_in"][i, j]
          act = jax.nn.relu(pre)
          direction = direction + act * w_dir[j]
          log_mag = log_mag + act * theta["w_out"][j, 1]
        mag = pexp(log_mag)
        u = mag * (adam_scale * mf_r + direction) + wd_scale * pf
        return u.astype(p.dtype), m, vr, vc

      out = jax.tree.map(leaf, updates, params, state.momenta, state.v_row, state.v_col)
      pick = lambda i: jax.tree.map(lambda o: o[i], out, is_leaf=lambda x: isinstance(x, tuple))
      new_state = MLPLOptState(count, pick(1), pick(2), pick(3))
      return pick(0), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
