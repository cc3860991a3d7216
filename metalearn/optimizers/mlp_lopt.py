"""A per-parameter MLP learned optimizer that costs about what Adam costs.

For every parameter ``p`` with gradient ``g`` the rule keeps two momenta ``m_a`` (decay 0.9) and
``m_b`` (decay 0.99) and a second moment ``v`` (decay 0.999), each an array of ``p``'s shape. The
gradient is first made safe, element by element: a NaN or Inf element counts as zero and a finite
one is clipped to ``|g| <= 1e18`` (so ``g**2`` stays finite in float32). With
``r = rsqrt(v_hat + eps**2)`` the features are

    f = clip([g r, m_a r, m_b r, p / rms(p)], -clip, clip)

A tiny MLP (``hidden_size`` ReLU units, 4 by default) reads ``f`` plus a per-tensor bias made from
an embedding of the fraction of training done and the tensor's log-RMS, and outputs a direction
``d`` and a log-magnitude ``s``. The step is

    u = [v > 0] * clip(-lr_t * pexp(s) * (m_a_hat r + alpha * d) - lr_t * wd * p, -b, b),
    lr_t = lr * exp(schedule(t)),   b = max(step_bound * rms(p), lr_t)

where ``pexp(s) = (1 + s/32)**32`` with ``s`` clipped to [-6, 3] is a positive, monotone,
exponential-like map that costs five multiplies instead of an ``exp`` (within 2% of ``exp`` for
``|s| <= 1``; 0.53x of it at -6 and 0.88x at 3). ``lr``, ``wd``, ``alpha`` and ``schedule`` (a
linear map of the time embedding) are meta-parameters too. The MLP's output layer starts at zero,
so at ``init_meta_params`` the rule is AdamW(lr=1e-3, wd=1e-5), and meta-training starts from a
working optimizer.

The bound ``b`` keeps a step within ``step_bound`` (20%) of the tensor's RMS unless the base
learning rate alone allows more. Meta-training tasks have small fan-ins, where learned step-size
multipliers of up to ``pexp(3) = 17.7`` are harmless; on a layer with a large fan-in (small weights,
e.g. the 3136-input dense layer of the flax MNIST CNN) the same multiplier nearly doubled the
weights in one step, which is what made the first steps of ``pretrained("default")`` spike.

Three properties hold for every theta, by construction:

* zero in, zero out: ``v`` is exactly zero while every gradient of an element has been exactly
  zero, and the gate ``[v > 0]`` then makes its update exactly zero (unused embedding rows, frozen
  or masked parameters stay put);
* contained faults: every statistic an element's update reads is its own (``g``, ``m_a``, ``m_b``,
  ``v``) or is per tensor and computed from the parameters only (``rms(p)``), so a bad gradient
  element changes no other element's update, and the safe gradient keeps the state finite;
* bounded steps: ``|u| <= b`` whatever the gradient (an outlier element's own step included).

The MLP is written out per hidden unit as elementwise arithmetic, so that XLA fuses the whole
update of a tensor into one loop instead of issuing a skinny matmul per tensor. Scalars are folded
before the loop, so the loop has one rsqrt and no divide or exp.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

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
  fast: optax.Updates    # m_a, shaped like the params
  slow: optax.Updates    # m_b, shaped like the params
  nu: optax.Updates      # v, shaped like the params


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
  param_feature: bool = True     # feed p / rms(p) to the MLP (one extra reduction per tensor)
  grad_feature: bool = True      # feed g * rsqrt(v) to the MLP
  step_bound: float = 0.2        # |u| <= max(step_bound * rms(p), base lr), per element

  name: ClassVar[str] = "mlp_lopt"
  # 2: the step magnitude uses pexp (five squarings) instead of exp.
  # 3: per-element second moment (was Adafactor-factored), safe gradient, zero-in-zero-out gate,
  #    step bound.
  math_version: ClassVar[int] = 3
  # Constructor arguments of older versions that files may still hold; ignored on load.
  retired_config: ClassVar[tuple] = ("factored",)

  def __post_init__(self):
    self.check_fields(at_least={1: ("hidden_size",)}, positive=("init_lr", "step_bound"))

  @property
  def num_features(self) -> int:
    return 2 + int(self.grad_feature) + int(self.param_feature)

  def init_meta_params(self, key):
    k1, k2 = jax.random.split(key)
    h = self.hidden_size
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    return {
        "log_lr": f32(np.log(self.init_lr)),
        "log_wd": f32(np.log(1e-5)),
        "log_alpha": f32(np.log(0.1)),
        "schedule": jnp.zeros((base.NUM_TIME_FEATURES,), jnp.float32),
        "w_in": jax.random.normal(k1, (self.num_features, h), jnp.float32)
                * float(1 / np.sqrt(self.num_features)),
        "w_tensor": jax.random.normal(k2, (NUM_TENSOR_FEATURES, h), jnp.float32)
                    * float(1 / np.sqrt(NUM_TENSOR_FEATURES)),
        "b_hidden": jnp.zeros((h,), jnp.float32),
        "w_out": jnp.zeros((h, 2), jnp.float32),
        "b_out": jnp.zeros((2,), jnp.float32),
    }

  def transformation(self, theta, num_steps) -> optax.GradientTransformationExtraArgs:
    rule = self

    def init_fn(params):
      zeros = lambda p: jnp.zeros(jnp.shape(p), jnp.float32)
      return MLPLOptState(count=jnp.zeros((), jnp.int32), fast=jax.tree.map(zeros, params),
                          slow=jax.tree.map(zeros, params), nu=jax.tree.map(zeros, params))

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
      inv_bc_v = 1.0 / bc_v
      c = rule.feature_clip
      b_a, b_b, b_v = rule.fast_decay, rule.slow_decay, rule.second_moment_decay

      def leaf(g, p, ma, mb, v):
        g = base.safe_gradient(g)
        pf = p.astype(jnp.float32)
        ma = b_a * ma + (1 - b_a) * g
        mb = b_b * mb + (1 - b_b) * g
        v = b_v * v + (1 - b_v) * (g * g)
        r = jax.lax.rsqrt(v * inv_bc_v + rule.eps**2)
        ma_r = ma * r
        feats = [jnp.clip(ma_r, -c, c), jnp.clip(mb * r, -c, c)]
        if rule.grad_feature:
          feats.insert(0, jnp.clip(g * r, -c, c))
        tensor_bias = hidden_time
        p_rms = base.rms(pf)
        if rule.param_feature:
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
        u = pexp(log_mag) * (adam_scale * ma_r + direction) + wd_scale * pf
        bound = jnp.maximum(rule.step_bound * p_rms, lr)
        u = jnp.where(v > 0, jnp.clip(u, -bound, bound), 0.0)  # bounded; zero in, zero out
        return u.astype(p.dtype), ma, mb, v

      treedef = jax.tree.structure(updates)
      out = [leaf(*xs) for xs in zip(*(treedef.flatten_up_to(x) for x in (
          updates, params, state.fast, state.slow, state.nu)))]
      column = lambda i: treedef.unflatten([o[i] for o in out])
      return column(0), MLPLOptState(count, column(1), column(2), column(3))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
