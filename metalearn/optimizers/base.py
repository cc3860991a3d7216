"""What every learned rule shares: the meta-parameter contract and input checks.

A learned rule is a small object with two methods:

* ``init_meta_params(key) -> theta``: a pytree of float arrays (the meta-parameters);
* ``as_optax(theta, *, num_steps) -> optax.GradientTransformationExtraArgs``.

``theta`` is an explicit argument, so the same rule can be evaluated at a tracer during
meta-training (gradients flow into ``theta``) and at concrete arrays when it trains a user's model.
"""
from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

MetaParams = Any


class LearnedRule(abc.ABC):
  """Base class of learned update rules; subclasses define the two methods below."""

  name: str = "rule"
  # Bumped whenever the rule's arithmetic changes in a way that changes what a given theta does,
  # so cached evaluations of the old arithmetic are not reused (see evaluate.runner.fingerprint).
  math_version: int = 1

  @abc.abstractmethod
  def init_meta_params(self, key: jax.Array) -> MetaParams:
    """Meta-parameters at which the rule already trains like a tuned-by-hand optimizer."""

  @abc.abstractmethod
  def as_optax(self, theta: MetaParams, *, num_steps) -> optax.GradientTransformationExtraArgs:
    """The rule at meta-parameters ``theta`` as an optax transformation for a ``num_steps`` run."""

  def config(self) -> dict:
    """Constructor arguments, JSON-serialisable, so that a checkpoint can rebuild the rule."""
    return {}

  def check_meta_params(self, theta: MetaParams) -> None:
    """Raises ``ValueError`` naming the first leaf of ``theta`` that does not fit this rule."""
    expected = jax.eval_shape(self.init_meta_params, jax.random.key(0))
    check_tree_matches(theta, expected, what=f"meta-parameters of {type(self).__name__}")


def check_tree_matches(tree, expected, *, what: str) -> None:
  """Checks that ``tree`` has the structure, shapes and float dtypes of ``expected``."""
  exp_leaves, exp_def = jax.tree_util.tree_flatten_with_path(expected)
  try:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  except Exception as e:  # pragma: no cover - tree_flatten rarely fails
    raise ValueError(f"{what}: could not read the tree ({e}).") from e
  if treedef != exp_def:
    got = {jax.tree_util.keystr(p) for p, _ in leaves}
    want = {jax.tree_util.keystr(p) for p, _ in exp_leaves}
    missing, extra = sorted(want - got), sorted(got - want)
    raise ValueError(
        f"{what} do not fit the rule: missing {missing or 'nothing'}, unexpected {extra or 'nothing'}. "
        "Pass the tree returned by init_meta_params (or loaded for this same rule and config).")
  for (path, leaf), (_, want) in zip(leaves, exp_leaves):
    shape = tuple(np.shape(leaf))
    if shape != tuple(want.shape):
      raise ValueError(
          f"{what} do not fit the rule: {jax.tree_util.keystr(path)} has shape {shape}, "
          f"expected {tuple(want.shape)}. Was theta made for a rule with other hyperparameters "
          "(hidden size, features)?")
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise ValueError(f"{what}: {jax.tree_util.keystr(path)} has dtype {jnp.result_type(leaf)}; "
                       "meta-parameters must be floating point.")


def check_num_steps(num_steps) -> None:
  """``num_steps`` may be a traced array (meta-training samples horizons); Python ints are checked."""
  if isinstance(num_steps, (bool, np.bool_)):
    raise TypeError("num_steps must be a positive integer (the training horizon), got a bool.")
  if isinstance(num_steps, jax.Array) and not isinstance(num_steps, jax.core.Tracer):
    num_steps = num_steps.item() if num_steps.size == 1 else num_steps
  if isinstance(num_steps, (int, float, np.integer, np.floating)):
    if not num_steps > 0:
      raise ValueError(f"num_steps must be > 0 (the number of training steps the rule is told "
                       f"about), got {num_steps}.")


def check_float_params(tree, *, what: str = "params") -> None:
  """Learned rules update floating-point arrays only; say which leaf is not."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          f"{what}{jax.tree_util.keystr(path)} has dtype {dtype}; learned optimizers update floating "
          "point parameters only. Optimize only nnx.Param leaves (nnx.Optimizer(model, tx, "
          "wrt=nnx.Param)) or cast the parameter to float32.")


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
