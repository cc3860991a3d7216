"""The grouped update path (metalearn.optimizers.grouped): the per-tensor path's numbers, per rule."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import metalearn as ml
from metalearn.optimizers import make_rule
from metalearn.optimizers.grouped import GroupedState, grouped, shape_classes

# The shipped default's class (with every option) and MLPLOpt run in the default suite; the other
# rules in the slow step.
slow = pytest.mark.slow
RULES = [pytest.param("adam", {}, marks=slow), pytest.param("sgdm", {}, marks=slow),
         ("mlp_lopt", {}), pytest.param("hyperparam_net", {}, marks=slow),
         pytest.param("hyper_lopt", {}, marks=slow), pytest.param("scaled_lopt", {}, marks=slow),
         ("scaled_lopt", {"adaptive": True, "horizon_aware": True})]
IDS = ["adam", "sgdm", "mlp_lopt", "hyperparam_net", "hyper_lopt", "scaled_lopt",
       "scaled_lopt_opts"]


class Net(nnx.Module):
  """Repeated shapes (two 16x16 layers, three 16-vectors) beside unique ones, and a conv."""

  def __init__(self, rngs):
    self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
    self.inp = nnx.Linear(36, 16, rngs=rngs)
    self.h1 = nnx.Linear(16, 16, rngs=rngs)
    self.h2 = nnx.Linear(16, 16, rngs=rngs)
    self.out = nnx.Linear(16, 3, rngs=rngs)

  def __call__(self, x):
    x = jax.nn.relu(self.conv(x)).mean(axis=-1).reshape(x.shape[0], -1)
    x = jax.nn.relu(self.inp(x))
    return self.out(jax.nn.relu(self.h2(jax.nn.relu(self.h1(x)))))


def batch(i):
  k1, k2 = jax.random.split(jax.random.key(100 + i))
  return jax.random.normal(k1, (8, 6, 6, 1)), jax.random.randint(k2, (8,), 0, 3)


def loss_fn(model, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def trained_theta(rule):
  """Meta-parameters away from the init (a nonzero per-element MLP, a nonzero controller)."""
  theta = rule.init_meta_params(jax.random.key(0))
  noise = optax.tree.random_like(jax.random.key(1), theta, jax.random.normal, jnp.float32)
  return jax.tree.map(lambda t, n: t + 0.05 * n, theta, noise)


def train(tx, steps=6):
  model = Net(nnx.Rngs(0))
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, opt, x, y):
    loss, g = nnx.value_and_grad(loss_fn)(model, x, y)
    opt.update(model, g, loss=loss)
    return loss

  losses = [float(step(model, opt, *batch(i))) for i in range(steps)]
  return model, opt, losses


@pytest.mark.parametrize("name, kw", RULES, ids=IDS)
def test_grouped_path_gives_the_per_tensor_numbers(name, kw):
  rule = make_rule(name, **kw)
  theta = trained_theta(rule)
  per_tensor, _, l1 = train(rule.as_optax(theta, num_steps=50))
  flat, opt, l2 = train(rule.as_optax(theta, num_steps=50, grouped=True))
  np.testing.assert_allclose(l1, l2, rtol=1e-5)
  a, b = nnx.state(per_tensor, nnx.Param), nnx.state(flat, nnx.Param)
  moved = 0.0
  for x, y, x0 in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                      jax.tree.leaves(nnx.state(Net(nnx.Rngs(0)), nnx.Param))):
    scale = float(jnp.max(jnp.abs(x - x0)))
    moved = max(moved, scale)
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-5 * scale + 1e-8)
  assert moved > 0   # the comparison saw training
  # One stacked state per shape class: 16x16 (2), 16 (3) and five unique shapes.
  groups = opt.opt_state.groups if hasattr(opt.opt_state, "groups") else None
  assert groups is not None and len(groups) == 7


def test_shape_classes_group_by_shape_and_dtype_in_order():
  leaves = [jnp.zeros((2, 3)), jnp.zeros(3), jnp.zeros((2, 3)), jnp.zeros(3, jnp.bfloat16),
            jnp.zeros(3)]
  assert shape_classes(leaves) == [[0, 2], [1, 4], [3]]


def test_grouped_inside_optax_combinators_and_with_optax_rules():
  params = {"a": jnp.ones((4, 4)), "b": jnp.ones((4, 4)) * 2, "c": jnp.ones(4)}
  grads = jax.tree.map(lambda p: jnp.sin(p * 3.0), params)
  for inner in (optax.adamw(1e-2), ml.pretrained("default", num_steps=100)):
    ref = optax.chain(optax.clip_by_global_norm(1.0), inner)
    tx = optax.chain(optax.clip_by_global_norm(1.0), grouped(inner))
    u_ref, _ = ref.update(grads, ref.init(params), params, loss=jnp.float32(1.0))
    state = tx.init(params)
    assert isinstance(state[1], GroupedState) and len(state[1].groups) == 2
    u, _ = tx.update(grads, state, params, loss=jnp.float32(1.0))
    for x, y in zip(jax.tree.leaves(u_ref), jax.tree.leaves(u)):
      np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9)


def test_sharded_parameters_are_refused_with_the_fix():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("x",))
  w = jax.device_put(jnp.ones((4, 8)), NamedSharding(mesh, P(None, "x")))
  tx = ml.pretrained("default", num_steps=10, grouped=True)
  with pytest.raises(ValueError, match="does not support sharded parameters.*grouped=False"):
    tx.init({"w": w})
  tx.init({"w": jax.device_put(jnp.ones((4, 8)), NamedSharding(mesh, P()))})   # replicated: fine


def test_state_of_other_parameters_is_refused():
  tx = ml.pretrained("default", num_steps=10, grouped=True)
  state = tx.init({"a": jnp.ones(3)})
  params = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
  with pytest.raises(ValueError, match="made for other parameters"):
    tx.update(params, state, params)
