"""What every rule needs to run inside any flax or optax program, wrapped around its math once.

``client_safe(tx)`` takes a rule's transformation, written over plain float arrays with
``jax.tree.map``, and makes it safe for clients:

* **Any pytree.** Tuples, lists, ``None``, ``optax.MaskedNode`` (left by ``optax.masked`` and
  ``optax.partition``) and empty trees pass through; a Python-float leaf is read as a float32 array.
* **Sharded flax models.** ``nnx.Optimizer`` passes its params as ``nnx.Variable``\\ s whose metadata
  (``out_sharding``) it copies onto every state leaf; with eager sharding it then shards each leaf
  by that annotation. The rule sees plain arrays, and each state leaf that mirrors a parameter gets
  the parameter's metadata with the annotation fitted to the leaf's shape: the parameter's own
  shape keeps it, a leading stacked axis is unsharded, a kept prefix or suffix of the parameter's
  axes (factored moments) keeps those axes' annotation, and a per-tensor scalar is replicated.
  The state therefore follows the parameters' sharding under eager sharding, under
  ``nnx.get_partition_spec`` + ``jax.jit(out_shardings=...)`` and under ``nnx.eval_shape``.
* **Same structures out as in.** The rule updates plain arrays; the updates and state it returns
  are put back into the trees it was given (``nnx.Variable`` wrappers included).
* **Clear errors.** Gradients shaped unlike the params name the leaf.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from metalearn.optimizers import checks


def _is_variable(x) -> bool:
  return isinstance(x, nnx.Variable)


def _as_array(x):
  """A Python scalar leaf becomes a float32 array (optax accepts such leaves); arrays pass."""
  if isinstance(x, (float, int)) and not isinstance(x, bool):
    return jnp.asarray(x, jnp.float32) if isinstance(x, float) else jnp.asarray(x)
  return x


def plain(tree):
  """``tree`` with every ``nnx.Variable`` replaced by its value and Python scalars by arrays."""
  return jax.tree.map(lambda x: _as_array(x.get_value() if _is_variable(x) else x), tree,
                      is_leaf=_is_variable)


def _fitted_spec(spec, param_shape, leaf_shape):
  """The sharding annotation of a state leaf of ``leaf_shape`` derived from its parameter's."""
  spec = tuple(spec) + (None,) * (len(param_shape) - len(tuple(spec)))
  n = len(leaf_shape)
  if leaf_shape == param_shape:
    return spec
  if n == 0:
    return ()
  if leaf_shape == param_shape[:n]:
    return spec[:n]
  if leaf_shape == param_shape[len(param_shape) - n:]:
    return spec[len(param_shape) - n:]
  if leaf_shape[1:] == param_shape:
    return (None,) + spec
  return (None,) * n


def _annotated(param, leaf):
  """``leaf`` as a Variable carrying ``param``'s metadata, its sharding fitted to its shape."""
  if not _is_variable(param) or not hasattr(leaf, "shape"):
    return leaf
  spec = param.get_metadata().get("out_sharding")
  if spec is None:
    return param.replace(leaf)
  param_shape = tuple(np.shape(param.get_value()))
  return param.replace(leaf, out_sharding=_fitted_spec(spec, param_shape, tuple(leaf.shape)))


def annotate_state(state, params):
  """Gives the state subtrees that mirror ``params`` the params' Variable metadata (see above)."""
  var_leaves = jax.tree.leaves(params, is_leaf=_is_variable)
  if not any(_is_variable(v) for v in var_leaves):
    return state
  treedef = jax.tree.structure(plain(params))
  single = treedef.num_nodes == 1  # a bare array: only leaves of its own shape mirror it

  def walk(node):
    if jax.tree.structure(node) == treedef:
      if not single or np.shape(node) == np.shape(var_leaves[0]):
        leaves = treedef.flatten_up_to(node)
        return treedef.unflatten([_annotated(p, s) for p, s in zip(var_leaves, leaves)])
    children, node_def = jax.tree.flatten(node, is_leaf=lambda x: x is not node)
    if node_def.num_nodes == 1:  # a leaf
      return node
    return node_def.unflatten([walk(c) for c in children])

  return walk(state)


def client_safe(tx: optax.GradientTransformationExtraArgs,
                rule: str = "rule") -> optax.GradientTransformationExtraArgs:
  """``tx`` wrapped for any client (see the module docstring)."""

  def init_fn(params):
    values = plain(params)
    checks.check_float_params(values)
    return annotate_state(tx.init(values), params)

  def update_fn(updates, state, params=None, **extra_args):
    values = plain(updates)
    if params is not None:
      params = plain(params)
      checks.check_grads_fit(values, params, what=f"params passed to {rule}.update")
    if not jax.tree.leaves(values):  # nothing to optimize (e.g. every leaf masked out)
      return updates, state
    new_updates, new_state = tx.update(values, plain(state), params, **extra_args)
    # Same tree structures out as in (Variables included), as optax and lax.scan expect.
    like = lambda tree, new: jax.tree.unflatten(jax.tree.structure(tree), jax.tree.leaves(new))
    return like(updates, new_updates), like(state, new_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
