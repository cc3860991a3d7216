"""Shipped rules: every listed name loads offline from the installed package and trains."""
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metalearn as ml
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
  src = ml.api._pretrained_dir() / "default.safetensors"
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
