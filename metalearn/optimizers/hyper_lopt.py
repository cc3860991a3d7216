"""A VeLO-style hypernetwork learned optimizer: a per-tensor recurrent controller writes each
tensor's per-parameter update network and step size.

For tensor ``k`` (parameter ``p``, gradient ``g``; per-parameter state ``m``, ``v``) at step ``t``
of ``T``:

    m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,   r = rsqrt(v_hat + eps^2),   a = m_hat r
    x_k = [time(t/T), loss features, static tensor features, s_k]        controller input, [F]
    h_k <- GRU(x_k, h_k)                                                  hidden state, [H]
    w_k = softmax(W_mix h_k + b_mix)                                      mixing weights, [K]
    mlp_k = sum_j w_kj mlp_j                       the bank's K per-parameter MLPs, mixed by weight
    D = a + mlp_k([g r, a]) - mlp_k(0)                                    per-element direction
    c_k = clip(w_lin . x_k + w_step . h_k + b_step, -8, 2)               per-tensor log step
    lr_k = exp(log_lr) cos_sched(t/T) exp(c_k)
    u = -lr_k max(rms(p), floor) n_k D - lr_k wd [v > 0] p,   n_k = exp(gamma clip(log rms D)) / rms D

(the last line is ScaledLOpt's ``relative_step``, shared). Features of ``x_k``: the time
embedding ``base.time_features`` (9), ScaledLOpt's loss features pooled over the run (trend
``log(ema_fast/ema_slow)`` and place between running min and max; 0 without ``loss=``), the
tensor's static features (log fan-in, log fan-out, is-vector, is-convolution, log rank),
``log rms(p)`` of the current parameters, and 4 statistics of the tensor from the previous step (0
at the first step): the log RMS of the gradient ``0.5 log mean(v_hat)``, the momentum's noise
ratio ``log(var(m_hat) / mean(v_hat))``, the spread of the second moment
``log(var(v_hat) / mean(v_hat)^2)`` (both ratios floored at 1e-4) and ``log rms(D)``. These are
reduced in the same pass that computes ``D`` and stored per tensor, so the controller runs before
the per-parameter pass; the state never depends on the parameters.

All tensors are stacked: ``x`` is one [num_tensors, F] array and the GRU, the mixing and the step
head run once per step as a few small matmuls, whatever the number of tensors. The bank's output
layers start at zero and the step head at zero, so at ``init_meta_params`` the rule *is*
ScaledLOpt at its init: Adam with the per-tensor learning rate ``lr max(rms(p), floor)``, cosine
decay and decoupled weight decay. The state is ``m``, ``v`` (2 floats per parameter), the GRU
hidden state [num_tensors, H], the stored statistics [num_tensors, 4] and the loss statistics.

Client safety as in ScaledLOpt: a NaN/Inf gradient element counts as zero (finite ones are clipped
to +-1e15), so it changes only its own update; if a direction still came out non-finite (only with
non-finite meta-parameters) the update is zero and the per-tensor state is kept (m and v, always
finite, take the step); zero-gradient elements get no update.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn.optimizers import base
from metalearn.optimizers.scaled_lopt import (LossStats, _loss_features, _loss_stats_init,
                                              _loss_stats_update, _tensor_features,
                                              mlp_correction, relative_step)

NUM_STATS = 4   # stored per tensor; with log rms(p), 5 dynamic features
NUM_STATIC = 5
NUM_FEATURES = base.NUM_TIME_FEATURES + 2 + NUM_STATIC + NUM_STATS + 1
P_FEATURE = base.NUM_TIME_FEATURES + 2 + NUM_STATIC + 3   # the column of log rms(p) in x
_BIG = 1e15


class HyperLOptState(NamedTuple):
  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates
  loss: LossStats
  hidden: jax.Array   # [num_tensors, H] GRU state
  stats: jax.Array    # [num_tensors, NUM_STATS] features of the previous step (tensor_stats)


def static_features(shapes) -> np.ndarray:
  """[num_tensors, NUM_STATIC]: ScaledLOpt's tensor features and log(1 + rank)."""
  rows = [_tensor_features(s) + [0.5 * np.log1p(len(s)) - 0.5] for s in shapes]
  return np.asarray(rows, np.float32).reshape(len(shapes), NUM_STATIC)


def tensor_stats(m, v, bc1, bc2, d_rms):
  """The per-tensor statistics the controller reads at the next step, as finite O(1) numbers:
  ``[log rms(g), momentum noise, second-moment spread, log rms(D)]``.

  Reduced over the raw moments, bias-corrected as scalars (``m_hat = bc1 m``, ``v_hat = bc2 v``),
  so no corrected copy of ``m`` or ``v`` is written out. The two variances are differences of
  nearly equal sums, so their ratios are floored at 1e-4 (float32 cancellation noise, and the
  exactly-zero variance of a scalar, read as that floor). Overflow (``v^2`` of gradients near
  1e15) only saturates a clipped feature; a NaN feature reads as 0.
  """
  tiny = 1e-30
  # Plain reductions (not one variadic lax.reduce, which GSPMD all-gathers on sharded tensors).
  mean_m, mean_m2 = bc1 * jnp.mean(m), (bc1 * bc1) * jnp.mean(m * m)
  mean_v, mean_v2 = bc2 * jnp.mean(v), (bc2 * bc2) * jnp.mean(v * v)
  mv = jnp.maximum(mean_v, tiny)
  noise = jnp.maximum((mean_m2 - mean_m * mean_m) / mv, 1e-4)
  spread = jnp.maximum((mean_v2 - mean_v * mean_v) / (mv * mv), 1e-4)
  feats = jnp.stack([
      0.1 * jnp.clip(0.5 * jnp.log(mv), -30.0, 10.0),       # log rms(g)
      # var(m_hat) / mean(v_hat), centred at e^-2 (it is ~1 at the first step: a feature at 0
      # there would carry only rounding noise, relative to itself).
      0.25 * jnp.clip(jnp.log(noise) + 2.0, -7.3, 4.0),
      0.25 * jnp.clip(jnp.log(spread), -9.3, 8.0),          # var(v_hat) / mean(v_hat)^2
      0.25 * jnp.clip(jnp.log(d_rms + tiny), -12.0, 3.0)])
  return jnp.where(jnp.isnan(feats), 0.0, feats)


def param_feature(p_rms):
  """``log rms(p)``: read from the current parameters (never stored in the state)."""
  return 0.25 * jnp.clip(jnp.log(p_rms + 1e-30), -12.0, 3.0)


def gru(theta, x, h):
  """One GRU step for all tensors at once: x [N, F], h [N, H] -> [N, H]."""
  hs = h.shape[-1]
  gx = x @ theta["gru_w"] + theta["gru_b"]
  gh = h @ theta["gru_u"]
  z = jax.nn.sigmoid(gx[:, :hs] + gh[:, :hs])
  r = jax.nn.sigmoid(gx[:, hs:2 * hs] + gh[:, hs:2 * hs])
  n = jnp.tanh(gx[:, 2 * hs:] + r * gh[:, 2 * hs:])
  return (1.0 - z) * n + z * h


def controller(theta, x, h, mlp_hidden):
  """The batched controller: ``(h_new, mlp weights per tensor, log step per tensor)``.

  ``x`` [N, F] and ``h`` [N, H] stack all tensors; the mixed MLP of tensor ``i`` is row ``i`` of
  ``softmax(h W_mix + b_mix) @ bank`` ([N, 4 * mlp_hidden]: w_in, b, w_out).
  """
  h = gru(theta, x, h)
  mix = jax.nn.softmax(h @ theta["w_mix"] + theta["b_mix"], axis=-1)
  k = theta["bank_b"].shape[0]
  bank = jnp.concatenate([theta["bank_w_in"].reshape(k, 2 * mlp_hidden), theta["bank_b"],
                          theta["bank_w_out"]], axis=1)
  log_step = x @ theta["w_lin"] + h @ theta["w_step"] + theta["b_step"]
  return h, mix @ bank, jnp.clip(log_step, -8.0, 2.0)


@dataclasses.dataclass(frozen=True)
class HyperLOpt(base.LearnedRule):
  """Per-tensor GRU controller over a bank of per-parameter MLPs (math in the module docstring)."""

  hidden_size: int = 8           # GRU state per tensor
  num_mlps: int = 4              # K: the bank of per-parameter MLPs
  mlp_hidden: int = 4            # hidden units of each per-parameter MLP
  init_lr: float = 0.03          # relative step, as ScaledLOpt
  scale_floor: float = 0.03
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  init_wd: float = 1e-3
  init_gamma: float = 1.0
  cosine: bool = True
  name = "hyper_lopt"
  # 2: a non-finite direction no longer freezes m and v (the update is still zero and the
  #    per-tensor state kept); identical numbers whenever theta is finite.
  math_version = 2

  def __post_init__(self):
    self.check_fields(at_least={1: ("hidden_size", "num_mlps", "mlp_hidden")},
                      positive=("init_lr", "scale_floor", "init_wd"))

  def init_meta_params(self, key):
    hs, k, hm, nf = self.hidden_size, self.num_mlps, self.mlp_hidden, NUM_FEATURES
    keys = jax.random.split(key, 4)
    f = lambda x: jnp.asarray(x, jnp.float32)
    normal = lambda kk, shape, scale: jax.random.normal(kk, shape, jnp.float32) * float(scale)
    return {
        "log_lr": f(np.log(self.init_lr)),
        "log_wd": f(np.log(self.init_wd)),
        "gamma": f(self.init_gamma),
        # The row of log rms(p) starts at zero: at init the state does not depend on the params.
        "gru_w": normal(keys[0], (nf, 3 * hs), 1 / np.sqrt(nf)).at[P_FEATURE].set(0.0),
        "gru_u": normal(keys[1], (hs, 3 * hs), 1 / np.sqrt(hs)),
        "gru_b": jnp.zeros((3 * hs,), jnp.float32),
        "w_mix": normal(keys[2], (hs, k), 0.3),
        "b_mix": jnp.zeros((k,), jnp.float32),
        "w_lin": jnp.zeros((nf,), jnp.float32),   # zero step head: ScaledLOpt's init
        "w_step": jnp.zeros((hs,), jnp.float32),
        "b_step": f(0.0),
        "bank_w_in": normal(keys[3], (k, 2, hm), 1 / np.sqrt(2.0)),
        "bank_b": jnp.full((k, hm), 0.1, jnp.float32),
        "bank_w_out": jnp.zeros((k, hm), jnp.float32),   # zero correction: Adam's direction
    }

  def transformation(self, theta, num_steps) -> optax.GradientTransformationExtraArgs:
    rule, hm = self, self.mlp_hidden

    def init_fn(params):
      base.check_float_params(params)
      n = len(jax.tree.leaves(params))
      zeros = lambda p: jnp.zeros_like(p, dtype=jnp.float32)  # keeps the param's sharding
      return HyperLOptState(
          jnp.zeros((), jnp.int32), jax.tree.map(zeros, params), jax.tree.map(zeros, params),
          _loss_stats_init(), jnp.zeros((n, rule.hidden_size), jnp.float32),
          jnp.zeros((n, NUM_STATS), jnp.float32))

    def update_fn(updates, state, params=None, *, loss=None, **extra_args):
      del extra_args
      base.require_params(params, "HyperLOpt")
      g_leaves, treedef = jax.tree.flatten(updates)
      p_leaves, m_leaves, v_leaves = (treedef.flatten_up_to(t) for t in (params, state.mu,
                                                                         state.nu))
      n = len(g_leaves)
      count = optax.safe_increment(state.count)
      t = count.astype(jnp.float32)
      frac = base.fraction_done(state.count, num_steps)
      stats = _loss_stats_update(state.loss, loss)
      glob = jnp.concatenate([base.time_features(frac), _loss_features(stats)])
      p_rms = [base.rms(p.astype(jnp.float32)) for p in p_leaves]
      prev = jnp.where(state.count > 0, state.stats, 0.0)
      x = jnp.concatenate([jnp.broadcast_to(glob, (n, glob.shape[0])),
                           jnp.asarray(static_features([g.shape for g in g_leaves])),
                           prev[:, :3], param_feature(jnp.stack(p_rms)).reshape(n, 1),
                           prev[:, 3:]], axis=1)
      hidden, mlps, log_step = controller(theta, x, state.hidden, hm)
      lr = jnp.exp(theta["log_lr"])
      if rule.cosine:
        lr = lr * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
      lr_k = lr * jnp.exp(log_step)
      wd = jnp.exp(theta["log_wd"])
      bc1 = 1.0 / (1.0 - rule.b1**t)
      bc2 = 1.0 / (1.0 - rule.b2**t)

      def leaf(i, g, p, m, v):
        w_in, b_h, w_out = mlps[i, :2 * hm].reshape(2, hm), mlps[i, 2 * hm:3 * hm], mlps[i, 3 * hm:]
        g = jnp.clip(base.safe_gradient(g), -_BIG, _BIG)   # NaN/Inf -> 0: contained
        m = rule.b1 * m + (1 - rule.b1) * g
        v = rule.b2 * v + (1 - rule.b2) * (g * g)
        r = jax.lax.rsqrt(v * bc2 + rule.eps**2)
        a = (m * bc1) * r
        d = a + mlp_correction(g * r, a, w_in, b_h, w_out, jax.nn.relu(b_h), hm)
        u, d_rms = relative_step(d, p, v, lr_k[i], wd, theta["gamma"], rule.scale_floor)
        feats = tensor_stats(m, v, bc1, bc2, d_rms)
        return u, m, v, feats, jnp.isfinite(d_rms)

      out = [leaf(i, *args) for i, args in enumerate(zip(g_leaves, p_leaves, m_leaves, v_leaves))]
      pick = lambda j: jax.tree.unflatten(treedef, [o[j] for o in out])
      ok = jnp.all(jnp.stack([o[4] for o in out])) if out else True
      keep = lambda new, old: jnp.where(ok, new, old)
      new_stats = jnp.stack([o[3] for o in out]).reshape(n, NUM_STATS)
      new_updates = jax.tree.map(lambda u, g: jnp.where(ok, u, 0.0).astype(g.dtype),
                                 pick(0), updates)
      # m and v come from sanitised gradients and are always finite, so only the O(tensors) state
      # is guarded: selecting m and v too would cost two parameter-sized passes per step.
      new_state = HyperLOptState(
          jnp.where(ok, count, state.count), pick(1), pick(2),
          jax.tree.map(keep, stats, state.loss), keep(hidden, state.hidden),
          keep(new_stats, state.stats))
      return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
