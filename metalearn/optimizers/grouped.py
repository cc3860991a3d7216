"""The grouped ("flat") update path: one vmapped update per shape class instead of one per tensor.

    tx = rule.as_optax(theta, num_steps=T, grouped=True)      # or grouped(any_per_tensor_tx)

The parameters' leaves are grouped by (shape, dtype); each group's gradients and parameters are
stacked along a new leading axis and the rule's update runs once per group, ``vmap``-ed over that
axis. A transformer with 24 blocks thus issues the per-element loops of its ~10 shape classes
once each instead of once per tensor: fewer, larger kernels, which is what pays where launches
dominate (GPUs, many small tensors). Every per-tensor quantity of the rule (RMS of the direction,
the controller's tensor features, factored moments) is still computed per tensor, so the numbers
are the per-tensor path's for every rule whose tensors interact only through global scalars
(all of metalearn's rules, at finite meta-parameters; tests/test_grouped.py checks each).

What differs, and when not to use it:

* **State layout.** The state is one stacked state per group (``GroupedState.groups``), not a tree
  mirroring the parameters: optimizer states saved with one path do not restore into the other.
* **Sharded parameters are refused.** Stacking tensors that are sharded differently would gather
  them; ``init`` raises on parameters that are not fully replicated. Use the per-tensor path there.
* **The non-finite guard is per group.** A rule that zeroes the whole update when a direction is
  non-finite (possible only with non-finite meta-parameters) zeroes that group's update only.
* **On CPU it does not pay** (docs/performance.md: the stacking and unstacking cost more memory
  traffic than the fewer loops save); the per-tensor path stays the default.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class GroupedState(NamedTuple):
  groups: tuple   # one state of the wrapped transformation per shape class, stacked on axis 0


def shape_classes(leaves) -> list[list[int]]:
  """Indices of ``leaves`` grouped by (shape, dtype), groups in order of first appearance."""
  groups: dict = {}
  for i, x in enumerate(leaves):
    groups.setdefault((tuple(np.shape(x)), str(jnp.result_type(x))), []).append(i)
  return list(groups.values())


def _check_unsharded(leaves) -> None:
  for x in leaves:
    sharding = getattr(x, "sharding", None)
    if isinstance(x, jax.Array) and sharding is not None and not sharding.is_fully_replicated:
      raise ValueError(
          f"grouped=True stacks parameters of one shape into one buffer and does not support "
          f"sharded parameters (a {x.shape} parameter is sharded as {sharding}); use the "
          f"per-tensor path (grouped=False) for sharded models.")


def grouped(tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """``tx`` (a per-tensor transformation over plain arrays) run once per shape class (module doc).

  Extra arguments of ``update`` (``loss=``) are passed unchanged to every group.
  """
  tx = optax.with_extra_args_support(tx)

  def init_fn(params):
    leaves = jax.tree.leaves(params)
    _check_unsharded(leaves)
    stack = lambda idx: jnp.stack([leaves[i] for i in idx])
    return GroupedState(tuple(jax.vmap(tx.init)(stack(idx)) for idx in shape_classes(leaves)))

  def update_fn(updates, state, params=None, **extra_args):
    g_leaves, treedef = jax.tree.flatten(updates)
    p_leaves = treedef.flatten_up_to(params) if params is not None else None
    classes = shape_classes(g_leaves)
    if len(classes) != len(state.groups):
      raise ValueError(f"the grouped state has {len(state.groups)} shape classes but the "
                       f"gradients have {len(classes)}; it was made for other parameters.")
    out, new_groups = [None] * len(g_leaves), []
    for idx, s in zip(classes, state.groups):
      if len(idx) == 1:   # a shape of its own: the per-tensor update, on the state's only row
        i = idx[0]
        u, s = tx.update(g_leaves[i], jax.tree.map(lambda x: x[0], s),
                         None if p_leaves is None else p_leaves[i], **extra_args)
        new_groups.append(jax.tree.map(lambda x: x[None], s))
        out[i] = u
        continue
      g = jnp.stack([g_leaves[i] for i in idx])
      if p_leaves is None:
        u, s = jax.vmap(lambda g, s: tx.update(g, s, None, **extra_args))(g, s)
      else:
        p = jnp.stack([p_leaves[i] for i in idx])
        u, s = jax.vmap(lambda g, s, p: tx.update(g, s, p, **extra_args))(g, s, p)
      new_groups.append(s)
      for j, i in enumerate(idx):
        out[i] = u[j]
    return jax.tree.unflatten(treedef, out), GroupedState(tuple(new_groups))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
