"""A learned optimizer whose steps are relative to each tensor's scale, with a step-size controller.

Built on what makes small-compute learned optimizers transfer to unseen tasks: the direction is
normalised per tensor, the step is a fraction of the tensor's own RMS (so it follows width and
weight scale, like LAMB's trust ratio and Celo's parameter scaling), the horizon is covered by a
cosine schedule, and a per-tensor controller adapts the step to what it can observe.

For a tensor ``k`` with parameter ``p`` and gradient ``g`` (state: ``m``, ``v``, 2 floats each):

    m <- b1 m + (1 - b1) g,     v <- b2 v + (1 - b2) g^2,     r = rsqrt(v_hat + eps^2)
    a = m_hat r                               Adam's direction
    D = a + mlp([g r, a]) - mlp(0)            a learned per-element correction (zero at init)
    u = -lr_k * scale_k * n_k * D - lr_k * wd * p
    n_k = exp(gamma * clip(log rms(D), -8, 1)) / rms(D)      normalisation (gamma: how much)
    scale_k = max(rms(p), floor)              steps relative to the tensor's size
    lr_k = exp(log_lr) * cos_sched(t / T) * exp(clip(w . f_k + b, -8, 2))      the controller

with ``cos_sched(x) = 0.5 (1 + cos(pi x))`` and controller features ``f_k``: the time embedding of
``t / T``, the loss trend ``log(ema_fast / ema_slow)`` and the loss's place between its running
min and max (both 0 without ``loss=``), log fan-in and fan-out, and whether the tensor is a vector
or a convolution kernel.
``gamma = 1`` (the init) cancels the normalisation: at
``init_meta_params`` the rule is Adam with a per-tensor learning rate ``lr * max(rms(p), floor)``
and cosine decay, decoupled weight decay ``lr_k * wd``. ``gamma = 0`` gives a LAMB-like normalised
step. The per-element MLP (``hidden_size`` ReLU units, written out as elementwise arithmetic) has
its output layer at zero, and subtracting ``mlp(0)`` makes a tensor whose gradients have always
been zero get no update but weight decay.

Controller options (0.4.0, off by default so rules saved earlier are unchanged):
``horizon_aware`` multiplies ``lr_k`` by ``(T / 1000) ** (w_horizon / 2)`` for a run of ``T =
num_steps`` (clipped to [20, 5e4]); ``adaptive`` multiplies it by ``exp(s_k)``, a per-tensor log
step in the state, ``s_k <- clip(adapt_memory s_k + adapt_rate (agree_k - adapt_bias), -3, 3)``
with ``agree_k = mean(sign(g) sign(m_prev))`` (> 0 while steps keep their direction).

Client safety: a NaN/Inf gradient element counts as zero and finite ones are clipped to +-1e15
(their square stays finite), so a bad or huge element changes only its own update and ``v``; if a
direction still came out non-finite (only possible with non-finite meta-parameters), the update is
zero. Weight
decay applies only to elements that have seen a gradient, so never-used rows stay exactly put. The state is ``m`` and ``v`` (each of the parameter's shape) and a few
scalars for the loss statistics.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn.optimizers import base

NUM_CONTROL_FEATURES = base.NUM_TIME_FEATURES + 6   # + 2 loss features + 4 tensor features
_BIG = 1e15   # |g| clip: its square (1e30) stays finite in float32
_MAX_LOG_STEP = 3.0   # adaptive rules: the per-tensor step multiplier stays in [e^-3, e^3]


class LossStats(NamedTuple):
  fast: jax.Array   # EMA of the loss, factor 0.9
  slow: jax.Array   # EMA of the loss, factor 0.99
  low: jax.Array    # running min of ``fast``
  high: jax.Array   # running max of ``fast``
  seen: jax.Array   # number of finite losses seen


class ScaledLOptState(NamedTuple):
  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates
  loss: LossStats
  # ``adaptive`` rules: per-tensor log step multiplier (a scalar per parameter); () otherwise.
  log_step: optax.Updates = ()


def _loss_stats_init():
  z = jnp.zeros((), jnp.float32)
  return LossStats(z, z, z, z, z)


def _loss_stats_update(s: LossStats, loss):
  if loss is None:
    return s
  loss = jnp.asarray(loss, jnp.float32).reshape(())
  ok = jnp.isfinite(loss)
  first = s.seen == 0
  fast = jnp.where(first, loss, 0.9 * s.fast + 0.1 * loss)
  slow = jnp.where(first, loss, 0.99 * s.slow + 0.01 * loss)
  low = jnp.where(first, fast, jnp.minimum(s.low, fast))
  high = jnp.where(first, fast, jnp.maximum(s.high, fast))
  new = LossStats(fast, slow, low, high, s.seen + 1)
  return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, s)


def _loss_features(s: LossStats):
  """[trend, position in [-1, 1]]; zeros until a loss has been seen."""
  seen = s.seen > 0
  tiny = 1e-12
  trend = jnp.clip(jnp.log((jnp.abs(s.fast) + tiny) / (jnp.abs(s.slow) + tiny)), -3.0, 3.0)
  pos = 2.0 * (s.fast - s.low) / jnp.maximum(s.high - s.low, tiny) - 1.0
  pos = jnp.where(s.high > s.low, pos, -1.0)
  return jnp.where(seen, jnp.stack([trend, pos]), 0.0)


def _tensor_features(shape) -> list[float]:
  """Log fan-in and fan-out (centred at 100), is-vector and is-convolution flags (per tensor)."""
  fan_in = float(np.prod(shape[:-1])) if len(shape) >= 2 else 1.0
  fan_out = float(shape[-1]) if len(shape) >= 1 else 1.0
  return [0.25 * (np.log(fan_in) - np.log(100.0)), 0.25 * (np.log(fan_out) - np.log(100.0)),
          1.0 if len(shape) < 2 else -1.0, 1.0 if len(shape) >= 3 else -1.0]


def mlp_correction(fg, fa, w_in, b_h, w_out, relu_b, hidden_size):
  """``mlp([g r, a]) - mlp(0)``: the learned per-element correction to Adam's direction ``a``.

  Written out per hidden unit as elementwise arithmetic (one fused loop, no skinny matmul);
  ``w_in`` [2, h], ``b_h``, ``w_out`` and ``relu_b = relu(b_h)`` [h] may be per-tensor tracers.
  """
  fg, fa = jnp.clip(fg, -5.0, 5.0), jnp.clip(fa, -5.0, 5.0)
  corr = 0.0
  for j in range(hidden_size):
    # relu(pre) - relu(b) is exactly 0 for zero features, whatever the rounding.
    act = jax.nn.relu(fg * w_in[0, j] + fa * w_in[1, j] + b_h[j]) - relu_b[j]
    corr = corr + act * w_out[j]
  return corr


def relative_step(d, p, v, lr_k, wd, gamma, floor):
  """``(u, rms(d))``: the per-tensor normalised, parameter-relative step of direction ``d``.

  ``u = -lr_k * max(rms(p), floor) * n * d - lr_k * wd * [v > 0] * p`` with the normalisation
  ``n = exp(gamma * clip(log rms(d), -8, 1)) / rms(d)``; ``gamma=None`` skips it (n = 1) and
  ``floor=None`` the parameter scale (1). Decay only touches elements that have seen a gradient
  (``v > 0``), so unused rows stay exactly put.
  """
  d_rms = jnp.sqrt(jnp.mean(d * d))
  if gamma is not None:
    log_d = jnp.clip(jnp.log(d_rms + 1e-30), -8.0, 1.0)
    inv = jnp.exp(gamma * log_d) / (d_rms + 1e-12)
  else:
    inv = 1.0
  pf = p.astype(jnp.float32)
  scale = jnp.maximum(base.rms(pf), floor) if floor is not None else 1.0
  u = -(lr_k * scale * inv) * d - jnp.where(v > 0, lr_k * wd, 0.0) * pf
  return u, d_rms


@dataclasses.dataclass(frozen=True)
class ScaledLOpt(base.LearnedRule):
  """Parameter-scaled, per-tensor normalised learned optimizer (math in the module docstring)."""

  hidden_size: int = 4
  init_lr: float = 0.03          # relative step: a fraction of rms(p) per step, before the schedule
  scale_floor: float = 0.03      # scale of tensors whose rms is below it (zero-initialised biases)
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  init_wd: float = 1e-3          # relative to lr_k: decay per step is lr_k * wd
  init_gamma: float = 1.0        # 1: Adam-like at init; 0: normalised (LAMB-like) steps
  cosine: bool = True            # multiply by a cosine decay over the horizon
  normalize: bool = True         # divide D by rms(D) (ablation: False keeps D's own size)
  relative: bool = True          # scale by max(rms(p), floor) (ablation: False uses 1)
  adaptive: bool = False         # per-tensor step adaptation from gradient-sign agreement
  init_adapt_rate: float = 0.02  # (adaptive) log-step change per step at full agreement
  adapt_memory: float = 0.99     # (adaptive) leak of the log-step: it forgets old agreement
  horizon_aware: bool = False    # the controller also reads log(num_steps): a learned power law
  name = "scaled_lopt"   # class attributes, not fields
  # 2: NaN/Inf elements count as zero; decay only elements that saw a gradient.
  # 3: a non-finite direction zeroes the update but no longer freezes m, v and the step count
  #    (identical numbers whenever theta is finite; two fewer passes over the state per step).
  math_version = 3

  def __post_init__(self):
    self.check_fields(at_least={0: ("hidden_size",)},
                      positive=("init_lr", "scale_floor", "init_wd"))

  def init_meta_params(self, key):
    h = max(self.hidden_size, 1)
    w_ctrl = jnp.zeros((NUM_CONTROL_FEATURES,), jnp.float32)
    f = lambda x: jnp.asarray(x, jnp.float32)
    return {
        "log_lr": f(np.log(self.init_lr)),
        "log_wd": f(np.log(self.init_wd)),
        "w_ctrl": w_ctrl,
        "b_ctrl": f(0.0),
        "gamma": f(self.init_gamma),
        "w_in": jax.random.normal(key, (2, h), jnp.float32) * float(1 / np.sqrt(2.0)),
        "b_hidden": jnp.full((h,), 0.1, jnp.float32),
        "w_out": jnp.zeros((h,), jnp.float32),
    } | ({"adapt_rate": f(self.init_adapt_rate), "adapt_bias": f(0.0)} if self.adaptive else {}) \
      | ({"w_horizon": f(0.0)} if self.horizon_aware else {})

  def warm_start(self, src_rule, src_theta):
    """Also starts an adaptive rule from a non-adaptive one of the same configuration: its
    meta-parameters are kept and the adaptation's (``adapt_rate``, ``adapt_bias``) come from
    this rule's init (``init_adapt_rate``)."""
    added = ("adaptive", "init_adapt_rate", "adapt_memory", "horizon_aware")
    same = lambda r: {k: v for k, v in r.config().items() if k not in added}
    if (type(src_rule) is type(self) and same(src_rule) == same(self)
        and (self.adaptive or not src_rule.adaptive)
        and (self.horizon_aware or not src_rule.horizon_aware)):
      mine = self.init_meta_params(jax.random.key(0))
      return {**mine, **{k: v for k, v in src_theta.items() if k in mine}}
    return super().warm_start(src_rule, src_theta)

  def transformation(self, theta, num_steps) -> optax.GradientTransformationExtraArgs:
    rule = self

    def init_fn(params):
      base.check_float_params(params)
      # zeros_like keeps the parameter's sharding (explicit-axis meshes refuse mixed selects).
      zeros = lambda p: jnp.zeros_like(p, dtype=jnp.float32)
      log_step = (jax.tree.map(lambda p: jnp.zeros((), jnp.float32), params)
                  if rule.adaptive else ())
      return ScaledLOptState(jnp.zeros((), jnp.int32), jax.tree.map(zeros, params),
                             jax.tree.map(zeros, params), _loss_stats_init(), log_step)

    def update_fn(updates, state, params=None, *, loss=None, **extra_args):
      del extra_args
      base.require_params(params, "ScaledLOpt")
      count = optax.safe_increment(state.count)
      t = count.astype(jnp.float32)
      frac = base.fraction_done(state.count, num_steps)
      stats = _loss_stats_update(state.loss, loss)
      global_feats = jnp.concatenate([base.time_features(frac), _loss_features(stats)])
      n_g = global_feats.shape[0]
      ctrl_global = jnp.dot(global_feats, theta["w_ctrl"][:n_g]) + theta["b_ctrl"]
      if rule.horizon_aware:   # lr multiplied by (T / 1000) ** (w_horizon / 2), T clipped to [20, 5e4]
        log_t = jnp.log(jnp.clip(jnp.asarray(num_steps, jnp.float32), 20.0, 5e4) / 1000.0)
        ctrl_global = ctrl_global + theta["w_horizon"] * 0.5 * log_t
      lr = jnp.exp(theta["log_lr"])
      if rule.cosine:
        lr = lr * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
      wd = jnp.exp(theta["log_wd"])
      bc1 = 1.0 / (1.0 - rule.b1**t)
      bc2 = 1.0 / (1.0 - rule.b2**t)
      w_in, b_h, w_out = theta["w_in"], theta["b_hidden"], theta["w_out"]
      use_mlp = rule.hidden_size > 0
      relu_b = jax.nn.relu(b_h)  # the hidden layer at zero features, subtracted: zero in, zero out

      def direction(g, m, v):
        g = jnp.clip(base.safe_gradient(g), -_BIG, _BIG)   # NaN/Inf -> 0: contained
        # Sign agreement of the gradient with the momentum before it, in [-1, 1]: > 0 while
        # steps keep going the same way (the step can grow), < 0 when they oscillate.
        agree = jnp.mean(jnp.sign(g) * jnp.sign(m)) if rule.adaptive else None
        m = rule.b1 * m + (1 - rule.b1) * g
        v = rule.b2 * v + (1 - rule.b2) * (g * g)
        r = jax.lax.rsqrt(v * bc2 + rule.eps**2)
        a = (m * bc1) * r
        d = a
        if use_mlp:
          d = a + mlp_correction(g * r, a, w_in, b_h, w_out, relu_b, rule.hidden_size)
        return d, m, v, agree

      def leaf(g, p, m, v, log_s):
        d, m, v, agree = direction(g, m, v)
        tensor_feats = jnp.asarray(_tensor_features(g.shape), jnp.float32)
        c = ctrl_global + jnp.dot(tensor_feats, theta["w_ctrl"][n_g:])
        lr_k = lr * jnp.exp(jnp.clip(c, -8.0, 2.0))
        if rule.adaptive:
          new_s = jnp.clip(rule.adapt_memory * log_s
                           + theta["adapt_rate"] * (agree - theta["adapt_bias"]),
                           -_MAX_LOG_STEP, _MAX_LOG_STEP)
          log_s = jnp.where(jnp.isfinite(new_s), new_s, log_s)
          lr_k = lr_k * jnp.exp(log_s)
        gamma = theta["gamma"] if rule.normalize else None
        u, d_rms = relative_step(d, p, v, lr_k, wd, gamma,
                                 rule.scale_floor if rule.relative else None)
        return u, m, v, jnp.isfinite(d_rms), log_s

      # Per leaf by hand: the params' own containers may be tuples, so no is_leaf trick.
      g_leaves, treedef = jax.tree.flatten(updates)
      rest = [treedef.flatten_up_to(t) for t in (params, state.mu, state.nu)]
      log_steps = (treedef.flatten_up_to(state.log_step) if rule.adaptive
                   else [None] * len(g_leaves))
      out = [leaf(*args) for args in zip(g_leaves, *rest, log_steps)]
      pick = lambda i: jax.tree.unflatten(treedef, [o[i] for o in out])
      ok = jnp.all(jnp.stack([o[3] for o in out])) if out else True
      # Only the update is guarded: m and v come from sanitised gradients and are always finite
      # (|m_hat| <= 7.3 sqrt(v_hat) for these betas), so D can be non-finite only through theta.
      # Selecting m and v as well would cost two more parameter-sized passes per step.
      new_updates = jax.tree.map(lambda u, g: jnp.where(ok, u, 0.0).astype(g.dtype),
                                 pick(0), updates)
      return new_updates, ScaledLOptState(count, pick(1), pick(2), stats,
                                          pick(4) if rule.adaptive else ())

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
