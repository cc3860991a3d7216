"""ScaledLOpt's 0.4 controller options: the per-tensor step adaptation from gradient-sign agreement
(``adaptive``), the horizon power law (``horizon_aware``), and warm starts from a rule without them."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from metalearn.meta import config as config_lib
from metalearn.meta.step import load_init_theta
from metalearn.optimizers.scaled_lopt import ScaledLOpt
from metalearn.optimizers.serialization import load_rule, save_rule
from rule_helpers import grads_at, make_params

NUM_STEPS = 200


def steps(rule, theta, grads_fn, n, params=None, num_steps=NUM_STEPS):
  params = {"w": jnp.ones((4, 4)) * 0.5} if params is None else params
  tx = rule.as_optax(theta, num_steps=num_steps)
  update = jax.jit(tx.update)
  state, out = tx.init(params), []
  for i in range(n):
    u, state = update(grads_fn(i), state, params)
    out.append(u)
  return out, state


def test_non_adaptive_rule_keeps_its_meta_parameters_and_state():
  rule = ScaledLOpt()
  theta = rule.init_meta_params(jax.random.key(0))
  assert not {"adapt_rate", "adapt_bias", "w_horizon"} & set(theta)
  _, state = steps(rule, theta, lambda i: {"w": jnp.ones((4, 4))}, 2)
  assert state.log_step == ()


def test_steady_gradients_grow_the_step_and_oscillating_ones_shrink_it():
  rule = ScaledLOpt(adaptive=True, adapt_memory=0.98, init_adapt_rate=0.1, cosine=False)
  theta = rule.init_meta_params(jax.random.key(0))
  steady, s_steady = steps(rule, theta, lambda i: {"w": jnp.ones((4, 4))}, 60)
  flip, s_flip = steps(rule, theta, lambda i: {"w": jnp.ones((4, 4)) * (-1.0) ** i}, 60)
  # Agreement +1 every step: s -> 0.1 / (1 - 0.98) * (1 - 0.98**59) ~ 3.4, clipped at 3.
  assert float(s_steady.log_step["w"]) == pytest.approx(3.0)
  # Alternating signs disagree with the momentum: the log step goes negative.
  assert float(s_flip.log_step["w"]) < -1.0
  base_rule = dataclasses.replace(rule, adaptive=False)
  base_theta = {k: v for k, v in theta.items() if k not in ("adapt_rate", "adapt_bias")}
  plain, _ = steps(base_rule, base_theta, lambda i: {"w": jnp.ones((4, 4))}, 60)
  ratio = float(jnp.abs(steady[-1]["w"]).mean() / jnp.abs(plain[-1]["w"]).mean())
  assert ratio == pytest.approx(np.exp(3.0), rel=1e-3)


def test_zero_adapt_rate_is_the_plain_rule():
  rule = ScaledLOpt(adaptive=True, init_adapt_rate=0.0)
  theta = rule.init_meta_params(jax.random.key(0))
  params = make_params()
  got, _ = steps(rule, theta, lambda i: grads_at(params, i), 5, params)
  base_rule = dataclasses.replace(rule, adaptive=False)
  base_theta = {k: v for k, v in theta.items() if k not in ("adapt_rate", "adapt_bias")}
  want, _ = steps(base_rule, base_theta, lambda i: grads_at(params, i), 5, params)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b)


def test_nan_meta_parameter_of_the_adaptation_leaves_the_log_step_finite():
  rule = ScaledLOpt(adaptive=True)
  theta = rule.init_meta_params(jax.random.key(0))
  theta["adapt_rate"] = jnp.asarray(np.nan)
  tx = rule.transformation(theta, NUM_STEPS)   # as_optax refuses a non-finite theta up front
  params = {"w": jnp.ones((4, 4))}
  _, state = tx.update({"w": jnp.ones((4, 4))}, tx.init(params), params)
  assert float(state.log_step["w"]) == 0.0


def test_horizon_aware_step_follows_the_learned_power_law():
  rule = ScaledLOpt(horizon_aware=True, cosine=False)
  theta = rule.init_meta_params(jax.random.key(0))
  theta["w_horizon"] = jnp.asarray(-1.0)   # lr proportional to (T / 1000) ** -0.5
  g = lambda i: {"w": jnp.ones((4, 4))}
  short, _ = steps(rule, theta, g, 1, num_steps=250)
  long, _ = steps(rule, theta, g, 1, num_steps=4000)
  ratio = float(jnp.abs(short[0]["w"]).mean() / jnp.abs(long[0]["w"]).mean())
  assert ratio == pytest.approx(4.0, rel=1e-4)   # (250 / 4000) ** -0.5


def test_adaptive_rule_round_trips_and_trains_an_nnx_model(tmp_path):
  rule = ScaledLOpt(adaptive=True, horizon_aware=True)
  theta = rule.init_meta_params(jax.random.key(0))
  save_rule(str(tmp_path / "r.safetensors"), rule, theta)
  rule2, theta2, _ = load_rule(str(tmp_path / "r.safetensors"))
  assert rule2 == rule and set(theta2) == set(theta)

  model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  opt = nnx.Optimizer(model, rule2.as_optax(theta2, num_steps=50), wrt=nnx.Param)
  x, y = jnp.ones((8, 3)), jnp.zeros((8, 2))
  loss_fn = lambda m: jnp.mean((m(x) - y) ** 2)
  first = float(loss_fn(model))
  for _ in range(30):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads, loss=loss)
  assert float(loss_fn(model)) < 0.5 * first


def _config(tmp_path, init_theta, **rule_kwargs):
  c = config_lib.default_config()
  c.rule = "scaled_lopt"
  c.rule_kwargs = dict(rule_kwargs)
  c.init_theta = init_theta
  return c


def test_warm_start_adds_the_new_meta_parameters_to_a_non_adaptive_rule(tmp_path):
  src = ScaledLOpt()
  src_theta = src.init_meta_params(jax.random.key(1))
  src_theta["log_lr"] = jnp.asarray(-2.5)
  save_rule(str(tmp_path / "src.safetensors"), src, src_theta)
  config = _config(tmp_path, str(tmp_path / "src.safetensors"), adaptive=True,
                   init_adapt_rate=0.07, horizon_aware=True)
  rule = ScaledLOpt(adaptive=True, init_adapt_rate=0.07, horizon_aware=True)
  theta = load_init_theta(config, rule)
  assert float(theta["log_lr"]) == -2.5
  assert float(theta["adapt_rate"]) == pytest.approx(0.07)
  assert float(theta["w_horizon"]) == 0.0
  np.testing.assert_array_equal(theta["w_in"], src_theta["w_in"])


def test_warm_start_refuses_another_configuration_clearly(tmp_path):
  src = ScaledLOpt(hidden_size=2)
  save_rule(str(tmp_path / "src.safetensors"), src, src.init_meta_params(jax.random.key(1)))
  config = _config(tmp_path, str(tmp_path / "src.safetensors"), adaptive=True)
  with pytest.raises(ValueError, match="Set rule/rule_kwargs to match it"):
    load_init_theta(config, ScaledLOpt(adaptive=True))
  # Dropping a meta-parameter the source learned is refused too (adaptive -> not adaptive).
  src = ScaledLOpt(adaptive=True)
  save_rule(str(tmp_path / "ad.safetensors"), src, src.init_meta_params(jax.random.key(1)))
  with pytest.raises(ValueError, match="Set rule/rule_kwargs to match it"):
    load_init_theta(_config(tmp_path, str(tmp_path / "ad.safetensors")), ScaledLOpt())


def test_adaptive_update_is_contained_under_bad_gradients():
  rule = ScaledLOpt(adaptive=True, horizon_aware=True)
  theta = rule.init_meta_params(jax.random.key(0))
  params = make_params()
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  g = grads_at(params, 0)
  g["kernel"] = g["kernel"].at[0, 0].set(jnp.nan)
  u, state = jax.jit(tx.update)(g, tx.init(params), params)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((u, state)))
  assert float(jnp.abs(u["kernel"][1:]).max()) > 0.0
