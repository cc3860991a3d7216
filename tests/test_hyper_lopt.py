"""HyperLOpt: the optax contract, ScaledLOpt's behaviour at init, one batched controller call,
and client safety (contained bad gradients, zero-gradient rows)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metalearn import artifacts, optimizers
from metalearn.optimizers.hyper_lopt import HyperLOpt
from metalearn.optimizers.scaled_lopt import ScaledLOpt
from metalearn.optimizers.serialization import load_rule, save_rule
from rule_helpers import (check_huge_element_is_contained, check_nan_element_counts_as_zero,
                          finite, grads_at, make_params)

NUM_STEPS = 20


def trained_theta(rule, seed=7):
  """Every meta-parameter moved off its init: the bank's MLPs and the step head are live."""
  theta = rule.init_meta_params(jax.random.key(0))
  keys = iter(jax.random.split(jax.random.key(seed), len(theta)))
  return {k: v + 0.3 * jax.random.normal(next(keys), v.shape) for k, v in theta.items()}


def run(tx, params, steps, grads_fn=grads_at, **kwargs):
  update = jax.jit(lambda g, s, p: tx.update(g, s, p, **kwargs))
  state, out = tx.init(params), []
  for i in range(steps):
    u, state = update(grads_fn(params, i), state, params)
    out.append(u)
    params = optax.apply_updates(params, u)
  return out, state, params


def test_registered_and_resolvable():
  assert isinstance(optimizers.make_rule("hyper_lopt"), HyperLOpt)
  rule, theta, _ = artifacts.resolve("init:hyper_lopt")
  assert isinstance(rule, HyperLOpt)
  rule.check_meta_params(theta)
  with pytest.raises(ValueError, match="num_mlps"):
    HyperLOpt(num_mlps=0)


def test_init_is_scaled_lopt_at_init():
  """At init_meta_params the rule is ScaledLOpt at its init (relative Adam + cosine decay)."""
  hyper, scaled = HyperLOpt(), ScaledLOpt()
  params = make_params()
  loss = lambda g: jnp.sum(g["kernel"] ** 2)
  tx_h = hyper.as_optax(hyper.init_meta_params(jax.random.key(0)), num_steps=NUM_STEPS)
  tx_s = scaled.as_optax(scaled.init_meta_params(jax.random.key(0)), num_steps=NUM_STEPS)
  step_h = jax.jit(lambda g, s, p: tx_h.update(g, s, p, loss=loss(g)))
  step_s = jax.jit(lambda g, s, p: tx_s.update(g, s, p, loss=loss(g)))
  s_h, s_s, p = tx_h.init(params), tx_s.init(params), params
  for i in range(8):
    g = grads_at(p, i)
    u_h, s_h = step_h(g, s_h, p)
    u_s, s_s = step_s(g, s_s, p)
    for k in params:
      np.testing.assert_allclose(u_h[k], u_s[k], rtol=1e-5, atol=1e-9, err_msg=f"{k}@{i}")
    p = optax.apply_updates(p, u_h)
  assert np.abs(np.asarray(s_h.hidden)).max() > 0   # the controller ran (and will matter)


def test_optax_contract_abstract_init_bf16_and_extras():
  rule = HyperLOpt()
  theta = trained_theta(rule)
  params = {"w": jnp.ones((4, 3), jnp.bfloat16), "b": jnp.zeros((3,), jnp.float32)}
  tx = rule.as_optax(theta, num_steps=50)
  assert isinstance(tx, optax.GradientTransformationExtraArgs)
  abstract = jax.eval_shape(tx.init, params)
  state = tx.init(params)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), abstract) == \
      jax.tree.map(lambda a: (a.shape, a.dtype), state)
  assert all(x.dtype in (jnp.float32, jnp.int32) for x in jax.tree.leaves(state))
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.1), params)
  u1, s1 = jax.jit(tx.update)(grads, state, params)                        # no loss
  u2, s2 = jax.jit(lambda g, s, p: tx.update(g, s, p, loss=jnp.asarray(2.0), whatever=3))(
      grads, state, params)                                                 # unknown extra
  assert u1["w"].dtype == jnp.bfloat16 and u1["b"].dtype == jnp.float32
  assert finite((u1, s1, u2, s2)) and float(jnp.abs(u1["w"].astype(jnp.float32)).max()) > 0
  with pytest.raises(ValueError, match="params"):
    tx.update(grads, state)


def test_state_is_two_floats_per_parameter_plus_per_tensor():
  rule = HyperLOpt()
  params = make_params()
  state = rule.as_optax(rule.init_meta_params(jax.random.key(0)), num_steps=10).init(params)
  n_params = sum(p.size for p in jax.tree.leaves(params))
  n_state = sum(np.size(x) for x in jax.tree.leaves(state))
  assert state.hidden.shape == (4, rule.hidden_size) and state.stats.shape == (4, 4)
  assert n_state <= 2 * n_params + 4 * (rule.hidden_size + state.stats.shape[1]) + 8


def count_dots(n_extra):
  rule = HyperLOpt()
  params = make_params(n_extra)
  tx = rule.as_optax(trained_theta(rule), num_steps=10)
  state = tx.init(params)
  jaxpr = jax.make_jaxpr(lambda g, s, p: tx.update(g, s, p, loss=1.0))(params, state, params)
  return str(jaxpr).count("dot_general")


def test_controller_is_one_batched_call_whatever_the_number_of_tensors():
  """4 or 24 tensors: the same number of matmuls (the GRU, mixing and step head run stacked)."""
  few, many = count_dots(0), count_dots(20)
  assert few == many, (few, many)
  assert few <= 8


def test_nan_gradient_element_counts_as_zero():
  rule = HyperLOpt()
  tx = rule.as_optax(trained_theta(rule), num_steps=NUM_STEPS)
  _, state, params = run(tx, make_params(), 2)
  check_nan_element_counts_as_zero(tx, state, params)


@pytest.mark.parametrize("bad", [np.inf, -1e30, 1e12])
def test_huge_gradient_element_is_contained(bad):
  rule = HyperLOpt()
  tx = rule.as_optax(rule.init_meta_params(jax.random.key(0)), num_steps=NUM_STEPS)
  _, state, params = run(tx, make_params(), 3)
  _, new_state = check_huge_element_is_contained(tx, state, params, bad)
  # The next step reads the bad element's statistics through the controller: still finite.
  u_next, s_next = jax.jit(tx.update)(grads_at(params, 4), new_state, params)
  assert finite((u_next, s_next))


def test_zero_gradient_rows_and_tensors_stay_put():
  rule = HyperLOpt()
  tx = rule.as_optax(trained_theta(rule), num_steps=NUM_STEPS)

  def grads_fn(p, i):
    g = grads_at(p, i)
    g["emb"] = jnp.zeros_like(g["emb"])
    g["kernel"] = g["kernel"].at[0].set(0.0)       # one row never sees a gradient
    return g

  out, state, _ = run(tx, make_params(), 4, grads_fn, loss=jnp.asarray(1.0))
  for u in out:
    assert np.all(np.asarray(u["emb"]) == 0) and np.all(np.asarray(u["kernel"][0]) == 0)
    assert np.all(np.abs(np.asarray(u["kernel"][1:])) > 0)
  assert finite(state)


def test_trained_theta_differs_from_init_and_trains():
  """With live meta-parameters the controller shapes the step, and a quadratic still descends."""
  rule = HyperLOpt()
  target = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.ones((4,))}
  params = jax.tree.map(lambda t: t * 0 + 0.5, target)
  loss_fn = lambda p: sum(jnp.sum((p[k] - target[k]) ** 2) for k in p)
  results = []
  for theta in (rule.init_meta_params(jax.random.key(0)), trained_theta(rule)):
    tx = rule.as_optax(theta, num_steps=200)
    state, p = tx.init(params), params

    @jax.jit
    def step(p, state):
      loss, g = jax.value_and_grad(loss_fn)(p)
      u, state = tx.update(g, state, p, loss=loss)
      return optax.apply_updates(p, u), state, u
    for _ in range(200):
      p, state, u = step(p, state)
    results.append((float(loss_fn(p)), u))
  assert results[0][0] < 0.2 * float(loss_fn(params))
  assert np.isfinite(results[1][0])
  assert not np.allclose(results[0][1]["w"], results[1][1]["w"])


def test_save_and_load_round_trip(tmp_path):
  rule = HyperLOpt(hidden_size=6, num_mlps=3)
  theta = trained_theta(rule)
  path = str(tmp_path / "h.safetensors")
  save_rule(path, rule, theta, recipe="test")
  rule2, theta2, info = load_rule(path)
  assert rule2 == rule and info["recipe"] == "test"
  for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(theta2)):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_shipped_hyper_lopt_is_this_rule():
  import metalearn as ml
  rule, theta, info = ml.pretrained_rule("hyper_lopt")
  assert isinstance(rule, HyperLOpt) and info["recipe"] == "experiments/hyper_lopt.py"
  tx = ml.pretrained("hyper_lopt", num_steps=NUM_STEPS)
  out, state, _ = run(tx, make_params(), 3, loss=jnp.asarray(1.0))
  assert finite((out, state))
