"""Shipped rules: every listed name loads offline from the installed package and trains."""
import shutil
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metalearn as ml
from metalearn import artifacts
from metalearn.optimizers import serialization


def test_default_and_hyperparam_net_are_shipped():
  names = ml.pretrained_names()
  assert "default" in names and "hyperparam_net" in names


@pytest.mark.parametrize("name", ml.pretrained_names())
def test_every_listed_name_loads_and_trains(name):
  rule, theta, info = ml.pretrained_rule(name)
  assert info["recipe"].startswith("experiments/")
  tx = ml.pretrained(name, num_steps=300)
  params = {"w": jnp.zeros((8, 1)), "b": jnp.zeros((1,))}
  x = jax.random.normal(jax.random.key(0), (256, 8))
  y = x @ jax.random.normal(jax.random.key(1), (8, 1))
  loss_fn = lambda p: jnp.mean((x @ p["w"] + p["b"] - y) ** 2)
  state, first = tx.init(params), loss_fn(params)
  step = jax.jit(lambda p, s: (lambda l, g: (l, *tx.update(g, s, p, loss=l)))(
      *jax.value_and_grad(loss_fn)(p)))
  for _ in range(300):
    loss, updates, state = step(params, state)
    params = optax.apply_updates(params, updates)
  assert loss_fn(params) < 0.2 * first


def test_unknown_name_lists_the_available_ones():
  with pytest.raises(ValueError, match="unknown pretrained rule 'defualt'.*default"):
    ml.pretrained("defualt", num_steps=10)


def test_corrupt_weights_file_is_a_clear_error(tmp_path):
  src = resources.files(artifacts.PRETRAINED_PACKAGE) / "default.safetensors"
  path = tmp_path / "default.safetensors"
  shutil.copy(str(src), path)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match="corrupt or truncated"):
    serialization.load_rule(str(path))
  # Flipped bytes that keep the file parseable but break the values are caught too.
  arr = np.frombuffer(data, np.uint8).copy()
  arr[-8:] = 0xFF  # NaN bit patterns in the last tensor
  path.write_bytes(arr.tobytes())
  with pytest.raises(ValueError):
    serialization.load_rule(str(path))


@pytest.mark.parametrize("name", ml.pretrained_names())
def test_stored_theta_loads_bit_identically(name):
  """Older files store `name` (and for MLPLOpt the retired `factored`) in rule_config; ignored."""
  from safetensors import safe_open
  path = resources.files(artifacts.PRETRAINED_PACKAGE) / f"{name}.safetensors"
  with safe_open(str(path), framework="numpy") as f:
    stored = {k: f.get_tensor(k) for k in f.keys()}
    # Older files store `name` in rule_config (ignored on load); files saved now do not.
  rule, theta, _ = ml.pretrained_rule(name)
  assert "name" not in rule.config()
  flat = serialization._flat_names(theta)
  assert sorted(flat) == sorted(stored)
  for key, value in stored.items():
    np.testing.assert_array_equal(np.asarray(flat[key]), value)
    assert np.asarray(theta_leaf(theta, key)).dtype == np.float32


def theta_leaf(theta, key):
  for part in key.split("/"):
    theta = theta[part]
  return theta


@pytest.mark.parametrize("name", ml.pretrained_names())
def test_pretrained_builds_under_a_trace(name):
  """pretrained() inside jit/eval_shape: the finiteness check of the file runs in numpy."""
  params = {"w": jnp.ones((4, 3))}
  state = jax.eval_shape(lambda: ml.pretrained(name, num_steps=10).init(params))
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(state))
  jax.jit(lambda p: ml.pretrained(name, num_steps=10).init(p))(params)
