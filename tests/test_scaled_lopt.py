"""ScaledLOpt: its init is the documented base optimizer, and the client-safety properties hold."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metalearn import optimizers
from metalearn.optimizers.scaled_lopt import ScaledLOpt
from rule_helpers import (check_huge_element_is_contained, check_nan_element_counts_as_zero,
                          grads_at, make_params)

NUM_STEPS = 20


def run(rule, theta, params, steps, grads_fn=grads_at, num_steps=NUM_STEPS):
  tx = rule.as_optax(theta, num_steps=num_steps)
  update = jax.jit(lambda g, s, p: tx.update(g, s, p, loss=jnp.sum(g["kernel"] ** 2)))
  state, out = tx.init(params), []
  for i in range(steps):
    u, state = update(grads_fn(params, i), state, params)
    out.append(u)
    params = optax.apply_updates(params, u)
  return out, state, params


def test_registered():
  assert isinstance(optimizers.make_rule("scaled_lopt"), ScaledLOpt)


@pytest.mark.parametrize("hidden_size", [0, 4])
def test_init_is_param_scaled_adam_with_cosine_decay(hidden_size):
  """At init: u = -lr * cos_sched * max(rms(p), floor) * adam_direction - lr_k * wd * p."""
  rule = ScaledLOpt(hidden_size=hidden_size)
  theta = rule.init_meta_params(jax.random.key(0))
  params = make_params()
  got, _, _ = run(rule, theta, params, 5)
  adam = optax.scale_by_adam(b1=rule.b1, b2=rule.b2, eps=0.0, eps_root=rule.eps**2)
  s, p = adam.init(params), params
  for i in range(5):
    d, s = adam.update(grads_at(p, i), s)
    lr = rule.init_lr * 0.5 * (1 + np.cos(np.pi * i / NUM_STEPS))
    rms = lambda x: float(jnp.sqrt(jnp.mean(x**2)))
    want = jax.tree.map(lambda d, x: -lr * max(rms(x), rule.scale_floor) * d
                        - lr * rule.init_wd * x, d, p)
    for k in params:
      np.testing.assert_allclose(got[i][k], want[k], rtol=2e-3, atol=1e-9, err_msg=f"{k}@{i}")
    p = optax.apply_updates(p, got[i])


def test_zero_gradients_give_no_update_but_weight_decay():
  rule = ScaledLOpt()
  theta = rule.init_meta_params(jax.random.key(0))
  theta["w_out"] = jnp.full_like(theta["w_out"], 0.7)   # a trained-looking direction MLP
  theta["gamma"] = jnp.asarray(0.0)
  params = make_params()

  def grads_fn(p, i):
    g = grads_at(p, i)
    g["emb"] = jnp.zeros_like(g["emb"])
    g["kernel"] = g["kernel"].at[0].set(0.0)       # one row never sees a gradient
    return g

  out, state, _ = run(rule, theta, params, 4, grads_fn)
  for u in out:
    assert np.all(np.abs(np.asarray(u["emb"])) <= 1e-4 * np.abs(np.asarray(params["emb"])) + 1e-12)
    assert np.all(np.abs(np.asarray(u["kernel"][0])) <= 1e-3 * 0.1)   # weight decay only
    assert np.all(np.abs(np.asarray(u["kernel"][1:])) > 0)


def test_nan_gradient_element_counts_as_zero():
  rule = ScaledLOpt()
  theta = rule.init_meta_params(jax.random.key(0))
  _, state, params = run(rule, theta, make_params(), 2)
  check_nan_element_counts_as_zero(rule.as_optax(theta, num_steps=NUM_STEPS), state, params)


@pytest.mark.parametrize("bad", [np.inf, -1e30, 1e12])
def test_huge_gradient_element_is_contained(bad):
  rule = ScaledLOpt()
  theta = rule.init_meta_params(jax.random.key(0))
  _, state, params = run(rule, theta, make_params(), 3)
  check_huge_element_is_contained(rule.as_optax(theta, num_steps=NUM_STEPS), state, params, bad)


def test_normalised_step_has_rms_relative_to_the_parameter():
  """gamma = 0: every tensor's step has rms lr * max(rms(p), floor) (before weight decay)."""
  rule = ScaledLOpt(init_wd=1e-12)
  theta = rule.init_meta_params(jax.random.key(0))
  theta["gamma"] = jnp.asarray(0.0)
  params = make_params()
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  u, _ = jax.jit(tx.update)(grads_at(params, 0), tx.init(params), params)
  for k, p in params.items():
    want = rule.init_lr * max(float(jnp.sqrt(jnp.mean(p**2))), rule.scale_floor)
    np.testing.assert_allclose(float(jnp.sqrt(jnp.mean(u[k] ** 2))), want, rtol=1e-4)


def test_weight_scale_equivariance():
  """Scaling a matrix by c (gradients by 1/c) scales its step by c: the rule cannot tell."""
  rule = ScaledLOpt()
  theta = rule.init_meta_params(jax.random.key(0))
  p = {"w": jax.random.normal(jax.random.key(2), (8, 8))}
  g = {"w": jax.random.normal(jax.random.key(3), (8, 8))}
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  u1, _ = tx.update(g, tx.init(p), p)
  for c in (0.1, 1e3):  # above the floor: max(rms(p), floor) = rms(p)
    pc = jax.tree.map(lambda x: x * c, p)
    uc, _ = tx.update(jax.tree.map(lambda x: x / c, g), tx.init(pc), pc)
    np.testing.assert_allclose(uc["w"], c * u1["w"], rtol=1e-4)


def test_shipped_scaled_lopt_loads_bit_identically(tmp_path):
  import metalearn as ml
  from metalearn.optimizers.serialization import load_rule, save_rule
  names = [n for n in ml.pretrained_names() if isinstance(ml.pretrained_rule(n)[0], ScaledLOpt)]
  assert names, "no shipped ScaledLOpt"
  for name in names:
    rule, theta, info = ml.pretrained_rule(name)
    assert info["recipe"] in ("experiments/scaled_lopt.py", "experiments/scaled_lopt_v3.py",
                              "experiments/scaled_lopt_v4_controller.py")
    save_rule(str(tmp_path / "again.safetensors"), rule, theta, **info)
    rule2, theta2, _ = load_rule(str(tmp_path / "again.safetensors"))
    assert rule2 == rule
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(theta2)):
      assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    params = make_params()
    tx = ml.pretrained(name, num_steps=100)
    u, state = jax.jit(tx.update)(grads_at(params, 0), tx.init(params), params)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((u, state)))
