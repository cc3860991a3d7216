"""Parameters, gradients and client-safety checks shared by the per-rule test files."""
import jax
import jax.numpy as jnp
import numpy as np


def make_params(n_extra=0):
  """A matrix, a zero bias, a ones vector and an embedding (+ ``n_extra`` small matrices)."""
  k1, k2 = jax.random.split(jax.random.key(0))
  params = {"kernel": jax.random.normal(k1, (6, 5)) / np.sqrt(6.0), "bias": jnp.zeros((5,)),
            "scale": jnp.ones((3,)), "emb": jax.random.normal(k2, (4, 3))}
  for i in range(n_extra):
    params[f"extra{i}"] = jnp.full((3, 2), 0.1 * (i + 1))
  return params


def grads_at(params, step):
  key = jax.random.fold_in(jax.random.key(1), step)
  keys = dict(zip(sorted(params), jax.random.split(key, len(params))))
  return {k: p * 0.5 + jax.random.normal(keys[k], p.shape) for k, p in params.items()}


def finite(tree) -> bool:
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def check_nan_element_counts_as_zero(tx, state, params, step=3):
  """A NaN in kernel[2, 1] gives exactly the update and state of a 0 there."""
  g = grads_at(params, step)
  zero = {**g, "kernel": g["kernel"].at[2, 1].set(0.0)}
  g["kernel"] = g["kernel"].at[2, 1].set(jnp.nan)
  u, new_state = jax.jit(tx.update)(g, state, params)
  want, want_state = jax.jit(tx.update)(zero, state, params)
  for a, b in zip(jax.tree.leaves((u, new_state)), jax.tree.leaves((want, want_state))):
    np.testing.assert_allclose(a, b, rtol=1e-6)


def check_huge_element_is_contained(tx, state, params, bad, step=3):
  """A huge or infinite kernel[2, 1] leaves every other element's update as it was; all finite.
  Returns the update and the new state."""
  g = grads_at(params, step)
  clean, _ = jax.jit(tx.update)(g, state, params)
  g["kernel"] = g["kernel"].at[2, 1].set(bad)
  u, new_state = jax.jit(tx.update)(g, state, params)
  mask = np.ones((6, 5), bool)
  mask[2, 1] = False
  np.testing.assert_allclose(np.asarray(u["kernel"])[mask], np.asarray(clean["kernel"])[mask],
                             rtol=1e-5)
  for k in ("bias", "scale", "emb"):
    np.testing.assert_allclose(u[k], clean[k], rtol=1e-6)
  assert finite((u, new_state))
  return u, new_state
