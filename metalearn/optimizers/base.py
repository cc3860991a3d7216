"""What every learned rule shares: the meta-parameter contract and input checks.

A learned rule is a small object with two methods:

* ``init_meta_params(key) -> theta``: a pytree of float arrays (the meta-parameters);
* ``as_optax(theta, *, num_steps) -> optax.GradientTransformationExtraArgs``, defined here once:
  it validates its arguments and wraps the subclass's ``transformation(theta, num_steps)``.

``theta`` is an explicit argument, so the same rule can be evaluated at a tracer during
meta-training (gradients flow into ``theta``) and at concrete arrays when it trains a user's model.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn.optimizers import checks, client
from metalearn.optimizers.grouped import grouped as group_by_shape

MetaParams = Any


class LearnedRule(abc.ABC):
  """Base class of learned update rules: a template that validates once and wraps every rule.

  A subclass defines ``init_meta_params(key)`` and ``transformation(theta, num_steps)`` (the rule's
  math as an ``optax.GradientTransformationExtraArgs`` over plain float arrays) and, as class
  attributes, ``name`` and ``math_version``. ``as_optax`` checks the arguments and wraps the
  transformation with what every client needs (see ``client.client_safe``): any pytree and
  combinator, ``nnx.Variable`` sharding metadata carried onto the state, Python-float leaves, empty
  trees, and gradients checked against the params.
  """

  name: ClassVar[str] = "rule"
  # Bumped whenever the rule's arithmetic changes in a way that changes what a given theta does,
  # so cached evaluations of the old arithmetic are not reused (see evaluate.runner.fingerprint).
  math_version: ClassVar[int] = 1

  @abc.abstractmethod
  def init_meta_params(self, key: jax.Array) -> MetaParams:
    """Meta-parameters at which the rule already trains like a tuned-by-hand optimizer."""

  @abc.abstractmethod
  def transformation(self, theta: MetaParams, num_steps) -> optax.GradientTransformationExtraArgs:
    """The rule's math at checked, float32 ``theta``; ``num_steps`` may be a traced array."""

  def as_optax(self, theta: MetaParams, *, num_steps,
               grouped: bool = False) -> optax.GradientTransformationExtraArgs:
    """The rule at meta-parameters ``theta`` as an optax transformation for a ``num_steps`` run.

    Callable under a trace (``jit``, ``eval_shape``): value checks run only on concrete values.
    ``grouped=True`` runs the update once per shape class of the parameters instead of once per
    tensor (``metalearn.optimizers.grouped``: same numbers, another state layout, unsharded
    parameters only).
    """
    checks.check_num_steps(num_steps)
    self.check_meta_params(theta)
    # Concrete theta stays concrete (numpy): a transformation built inside nnx.eval_shape or
    # nnx.jit (and kept by nnx.Optimizer) must not close over tracers of that trace.
    theta = jax.tree.map(lambda x: np.asarray(x, np.float32) if checks.is_concrete(x)
                         else jnp.asarray(x, jnp.float32), theta)
    tx = self.transformation(theta, num_steps)
    return client.client_safe(group_by_shape(tx) if grouped else tx, type(self).__name__)

  def check_fields(self, *, at_least: dict[int, tuple[str, ...]] | None = None,
                   positive: tuple[str, ...] = ()) -> None:
    """For ``__post_init__``: ``at_least={1: ("hidden_size",)}`` requires each named field to be
    >= 1, ``positive=("init_lr",)`` > 0; the error names the field and its value."""
    for bound, names in (at_least or {}).items():
      for k in names:
        if getattr(self, k) < bound:
          raise ValueError(f"{k} must be >= {bound}, got {getattr(self, k)}.")
    for k in positive:
      if not getattr(self, k) > 0:
        raise ValueError(f"{k} must be > 0, got {getattr(self, k)}.")

  def config(self) -> dict:
    """Constructor arguments, JSON-serialisable, so that a checkpoint can rebuild the rule."""
    return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

  def warm_start(self, src_rule: "LearnedRule", src_theta: MetaParams) -> MetaParams | None:
    """``src_theta`` (meta-parameters of ``src_rule``) as a starting point for this rule, or None
    if they do not fit. The same class and config fit as they are; a rule that adds meta-parameters
    on top of another configuration (``ScaledLOpt(adaptive=True)`` over a non-adaptive one)
    overrides this to fill the new ones from its init."""
    if type(src_rule) is type(self) and src_rule.config() == self.config():
      return src_theta
    return None

  def check_meta_params(self, theta: MetaParams) -> None:
    """Raises ``ValueError`` naming the first leaf of ``theta`` that does not fit this rule.

    Structure, shapes and dtypes always; finiteness only of concrete (untraced) leaves.
    """
    what = f"meta-parameters of {type(self).__name__}"
    expected = jax.eval_shape(self.init_meta_params, jax.random.key(0))
    checks.check_tree_matches(theta, expected, what=what)
    checks.check_finite(theta, what=what)


def rule_as_optax(rule: LearnedRule, theta: MetaParams, *, num_steps,
                  grouped: bool = False) -> optax.GradientTransformationExtraArgs:
  """``rule.as_optax(theta, num_steps=...)``, with ``grouped`` passed only when it is set, so a
  rule that overrides ``as_optax`` without it (written before 0.5.0) keeps working."""
  return rule.as_optax(theta, num_steps=num_steps, **({"grouped": True} if grouped else {}))


# Kept importable from here: rules and tests use these names.
check_tree_matches = checks.check_tree_matches
check_num_steps = checks.check_num_steps
check_float_params = checks.check_float_params


def require_params(params, rule: str):
  if params is None:
    raise ValueError(f"{rule}.update needs `params` (its features read the parameters); call "
                     "tx.update(grads, state, params) — nnx.Optimizer and optax.MultiSteps do this.")


# -- shared numerics -------------------------------------------------------------------------------


def is_factored(shape) -> bool:
  """Second moments of tensors with two or more dims >= 2 are kept as row and column factors."""
  return len(shape) >= 2 and shape[-1] > 1 and int(np.prod(shape[:-1])) > 1


def init_second_moment(p, factored: bool = True):
  """Adafactor-style state: (row, col) factors for matrices, a full array otherwise."""
  if factored and is_factored(p.shape):
    return (jnp.zeros(p.shape[:-1], jnp.float32), jnp.zeros(p.shape[-1:], jnp.float32))
  return (jnp.zeros(p.shape, jnp.float32), jnp.zeros((), jnp.float32))


def update_second_moment(v, g, decay, factored: bool = True):
  """EMA of g**2 for gradient ``g``, factored over the last axis vs the rest for matrices."""
  row, col = v
  if factored and is_factored(g.shape):
    # The two reductions square g each in their own way: written identically, XLA would share one
    # g*g and write it out as a full-size array (a wasted pass over memory) for both to read.
    new_row = decay * row + (1 - decay) * jnp.mean(g * g, axis=-1)
    lead = tuple(range(g.ndim - 1))
    new_col = decay * col + (1 - decay) * jnp.mean(jnp.abs(g) * jnp.abs(g), axis=lead)
    return (new_row, new_col)
  return (decay * row + (1 - decay) * (g * g), col)


def second_moment_rsqrt(v, shape, bias_correction, eps, factored: bool = True):
  """``rsqrt(v_hat + eps**2)`` with ``v_hat`` the bias-corrected estimate of E[g**2].

  For factored matrices the result is returned as a broadcastable product of a per-row and a
  per-column factor, ``rsqrt(row / mean(row)) * rsqrt(col / bias_correction + eps**2)``, so the
  per-element cost is one multiply instead of a multiply, an add and an rsqrt. The two forms agree
  except for gradients so small that ``eps`` dominates a row's factor (rows of zeros give zero
  features either way).
  """
  row, col = v
  if factored and is_factored(shape):
    row_scale = 1.0 / jnp.maximum(jnp.mean(row), 1e-30)
    r_row = jax.lax.rsqrt(row * row_scale + 1e-30)
    r_col = jax.lax.rsqrt(col * (1.0 / bias_correction) + eps**2)
    return r_row[..., None] * r_col
  return jax.lax.rsqrt(row * (1.0 / bias_correction) + eps**2)


MAX_GRAD = 1e18  # |g| above this is clipped: g**2 must stay finite in float32


def safe_gradient(g):
  """``g`` in float32 with NaN/Inf elements set to zero and finite ones clipped to ``MAX_GRAD``.

  Rules read gradients through this, so that one bad element changes only its own update and the
  state stays finite.
  """
  g = jnp.asarray(g, jnp.float32)
  return jnp.where(jnp.isfinite(g), jnp.clip(g, -MAX_GRAD, MAX_GRAD), 0.0)


def fraction_done(count, num_steps):
  """Fraction of training done in [0, 1] (clipped), from the step count and horizon."""
  return jnp.clip(count.astype(jnp.float32) / jnp.maximum(jnp.asarray(num_steps, jnp.float32), 1.0),
                  0.0, 1.0)


def time_features(frac):
  """A small embedding of the fraction of training done: the fraction itself, and tanh ramps."""
  scales = jnp.array([1.0, 3.0, 10.0, 30.0], jnp.float32)
  return jnp.concatenate([frac[None] * 2 - 1, jnp.tanh(frac * scales) * 2 - 1,
                          jnp.tanh((1 - frac) * scales) * 2 - 1])


NUM_TIME_FEATURES = 9


def rms(x):
  return jnp.sqrt(jnp.mean(jnp.square(x)) + 1e-30)
