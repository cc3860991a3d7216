"""The usage the guide promises, as a user writes it: learned rules in a flax NNX loop."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import metalearn as ml
from metalearn.optimizers import serialization
from metalearn import data as datasets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "docs", "examples", "train_mnist_mlp.py")
NUM_STEPS = 200


class MLP(nnx.Module):

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, 32, rngs=rngs)
    self.out = nnx.Linear(32, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.hidden(x.reshape(x.shape[0], -1))))


def loss_fn(model, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model, optimizer, x, y):
  loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
  optimizer.update(model, grads, loss=loss)
  return loss


@nnx.jit
def train_step_without_loss(model, optimizer, x, y):
  grads = nnx.grad(loss_fn)(model, x, y)
  optimizer.update(model, grads)


@pytest.fixture(scope="module")
def digits(data_dir):
  train = datasets.load_images("digits", "train", data_dir=data_dir)
  return jnp.asarray(train["image"]), jnp.asarray(train["label"])


def batches(x, y, num_steps, batch_size=64, seed=0):
  rng = np.random.default_rng(seed)
  for _ in range(num_steps):
    idx = rng.integers(0, len(x), batch_size)
    yield x[idx], y[idx]


def param_values(model):
  """Copies of the model's parameter arrays (``nnx.state`` holds references to the Variables)."""
  return [np.array(a) for a in jax.tree.leaves(nnx.state(model, nnx.Param))]


def initial_tx(name, num_steps=NUM_STEPS):
  rule = ml.optimizers.RULES[name]()
  return rule.as_optax(rule.init_meta_params(jax.random.key(0)), num_steps=num_steps)


@pytest.mark.parametrize("name", sorted(ml.optimizers.RULES))
def test_initial_rule_trains_a_digits_mlp(name, digits):
  """Every rule, at its initial meta-parameters, cuts the loss by >= 30% in 200 steps."""
  x, y = digits
  model = MLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, initial_tx(name), wrt=nnx.Param)
  initial = float(loss_fn(model, x, y))
  for xb, yb in batches(x, y, NUM_STEPS):
    loss = train_step(model, optimizer, xb, yb)
  assert np.isfinite(float(loss))
  final = float(loss_fn(model, x, y))
  assert final <= 0.7 * initial, (name, initial, final)
  assert int(optimizer.step[...]) == NUM_STEPS


def test_update_without_loss_and_load_optimizer(digits, tmp_path):
  """``loss=`` is optional, also for the rule that reads it; a saved rule loads by path."""
  rule = ml.optimizers.HyperparamNet()
  theta = rule.init_meta_params(jax.random.key(0))
  workdir = tmp_path / "run"
  serialization.save_rule(str(workdir / "theta.safetensors"), rule, theta)
  # A meta-train workdir (here holding only the export) or the exported file itself.
  assert isinstance(ml.load_optimizer(str(workdir), num_steps=50),
                    optax.GradientTransformationExtraArgs)
  tx = ml.load_optimizer(str(workdir / "theta.safetensors"), num_steps=50)
  x, y = digits
  model = MLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  start = float(loss_fn(model, x, y))
  before = param_values(model)
  for xb, yb in batches(x, y, 50):
    train_step_without_loss(model, optimizer, xb, yb)
  assert all(not np.array_equal(a, b) for a, b in zip(before, param_values(model)))
  assert float(loss_fn(model, x, y)) < 0.9 * start


def test_pretrained_names_and_unknown_name():
  names = ml.pretrained_names()
  assert isinstance(names, list) and names == sorted(names)
  for name in names:
    assert isinstance(ml.pretrained(name, num_steps=100), optax.GradientTransformationExtraArgs)
  with pytest.raises(ValueError, match="unknown pretrained rule 'no-such-rule'"):
    ml.pretrained("no-such-rule", num_steps=100)


def test_chain_and_multi_steps_in_nnx_optimizer(digits):
  x, y = digits
  model = MLP(nnx.Rngs(0))
  tx = optax.MultiSteps(optax.chain(optax.clip_by_global_norm(1.0), initial_tx("mlp_lopt")),
                        every_k_schedule=2)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  start = float(loss_fn(model, x, y))
  for i, (xb, yb) in enumerate(batches(x, y, 20)):
    before = param_values(model)
    train_step(model, optimizer, xb, yb)
    moved = any(not np.array_equal(a, b) for a, b in zip(before, param_values(model)))
    assert moved == (i % 2 == 1)  # params move every second step only
  assert float(loss_fn(model, x, y)) < start


class NormedMLP(nnx.Module):
  """A model with non-Param state: BatchNorm statistics and an integer call counter."""

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, 32, rngs=rngs)
    self.norm = nnx.BatchNorm(32, momentum=0.9, rngs=rngs)
    self.out = nnx.Linear(32, 10, rngs=rngs)
    self.calls = nnx.Variable(jnp.zeros((), jnp.int32))

  def __call__(self, x):
    self.calls[...] += 1
    return self.out(nnx.relu(self.norm(self.hidden(x.reshape(x.shape[0], -1)))))


def test_model_with_non_param_variables(digits):
  x, y = digits
  model = NormedMLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, initial_tx("mlp_lopt", num_steps=60), wrt=nnx.Param)
  # Optimizer state exists for the Params only (at most 3 floats each + a count), never the batch
  # statistics.
  num_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  num_state = sum(np.size(s) for s in jax.tree.leaves(nnx.state(optimizer.opt_state)))
  assert num_state <= 3 * num_params + 1
  model.eval()
  start = float(loss_fn(model, x, y))
  model.train()
  calls = int(model.calls[...])
  for xb, yb in batches(x, y, 60):
    loss = train_step(model, optimizer, xb, yb)
  assert np.isfinite(float(loss))
  assert int(model.calls[...]) == calls + 60  # updated by the model, untouched by the optimizer
  assert model.calls[...].dtype == jnp.int32
  assert float(jnp.abs(model.norm.mean[...]).sum()) > 0  # batch statistics were tracked
  model.eval()
  assert float(loss_fn(model, x, y)) < 0.8 * start


def test_example_script_runs(data_dir):
  env = {**os.environ, "TFDS_DATA_DIR": data_dir, "JAX_PLATFORMS": "cpu",
         "JAX_NUM_CPU_DEVICES": "1"}
  result = subprocess.run(
      [sys.executable, EXAMPLE, "--steps", "20", "--hidden", "32", "--batch-size", "64"],
      capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  losses = [float(line.split()[-1]) for line in lines if "train loss" in line]
  assert len(losses) >= 2 and all(np.isfinite(losses))
  assert losses[-1] < losses[0]
  assert "test accuracy" in lines[-1]
