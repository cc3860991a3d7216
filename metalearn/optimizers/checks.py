"""Input checks shared by every learned rule, written so that they never break tracing.

Shapes, dtypes and tree structures are static under ``jit``/``eval_shape`` and are always checked.
Checks of *values* (finite meta-parameters, a positive horizon) run only on concrete values: a
rule built inside ``nnx.jit`` or ``nnx.eval_shape`` gets traced meta-parameters, and calling
``bool()`` on them would raise.
"""
from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def check_num_steps(num_steps) -> None:
  """``num_steps``: a positive, finite number, or an integer/float array (possibly traced).

  Meta-training passes sampled horizons as traced arrays; users pass Python ints. ``None``,
  strings (``"100"``), bools, ``inf`` and ``nan`` are rejected at the call.
  """
  what = ("num_steps must be a positive, finite number of training steps (the horizon the rule is "
          "told about)")
  if isinstance(num_steps, (bool, np.bool_)) or num_steps is None or isinstance(num_steps, str):
    raise TypeError(f"{what}, got {num_steps!r}.")
  if isinstance(num_steps, numbers.Real):
    value = float(num_steps)
  elif hasattr(num_steps, "dtype") and hasattr(num_steps, "shape"):
    if np.size(num_steps) != 1 or not (jnp.issubdtype(num_steps.dtype, jnp.integer)
                                       or jnp.issubdtype(num_steps.dtype, jnp.floating)):
      raise TypeError(f"{what}, got an array of shape {np.shape(num_steps)} and dtype "
                      f"{num_steps.dtype}.")
    if not is_concrete(num_steps):
      return
    value = float(np.asarray(num_steps).reshape(()))
  else:
    raise TypeError(f"{what}, got {type(num_steps).__name__} {num_steps!r}.")
  if not (math.isfinite(value) and value > 0):
    raise ValueError(f"{what}, got {num_steps!r}.")


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


def check_finite(tree, *, what: str) -> None:
  """Names the first concrete leaf holding NaN or Inf; traced leaves are skipped."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if is_concrete(leaf) and not np.all(np.isfinite(np.asarray(leaf, np.float64))):
      raise ValueError(f"{what}: {jax.tree_util.keystr(path)} holds non-finite values (NaN or "
                       "Inf); such meta-parameters would turn every update NaN.")


def check_float_params(tree, *, what: str = "params") -> None:
  """Learned rules update floating-point arrays only; say which leaf is not."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          f"{what}{jax.tree_util.keystr(path)} has dtype {dtype}; learned optimizers update floating "
          "point parameters only. Optimize only nnx.Param leaves (nnx.Optimizer(model, tx, "
          "wrt=nnx.Param)) or cast the parameter to float32.")


def check_grads_fit(updates, reference, *, what: str) -> None:
  """Gradients must have the structure and shapes of the params (or of the state's params)."""
  g_leaves, g_def = jax.tree_util.tree_flatten_with_path(updates)
  r_leaves, r_def = jax.tree_util.tree_flatten_with_path(reference)
  if g_def != r_def:
    got = {jax.tree_util.keystr(p) for p, _ in g_leaves}
    want = {jax.tree_util.keystr(p) for p, _ in r_leaves}
    raise ValueError(
        f"gradients do not fit the {what}: missing {sorted(want - got) or 'nothing'}, unexpected "
        f"{sorted(got - want) or 'nothing'}. Pass gradients of the same tree the optimizer was "
        "initialized with (nnx.Optimizer: the same `wrt` filter for nnx.grad).")
  for (path, g), (_, r) in zip(g_leaves, r_leaves):
    if np.shape(g) != np.shape(r):
      raise ValueError(f"gradient {jax.tree_util.keystr(path)} has shape {np.shape(g)} but the "
                       f"{what} leaf has shape {np.shape(r)}.")
