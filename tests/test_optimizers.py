"""Contract tests of every learned rule as an optax transformation.

In the spirit of optax's tests for contributed optimizers: every rule in ``optimizers.RULES``, built
with its defaults at ``theta = init_meta_params(key(0))``, must behave as an ordinary
``optax.GradientTransformationExtraArgs``.
"""
import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metalearn import optimizers
from metalearn.optimizers import serialization

RULE_NAMES = sorted(optimizers.RULES)
NUM_STEPS = 100


# -- fixtures and helpers --------------------------------------------------------------------------


def make_params():
  """A matrix, a vector, a scalar and a conv-like 4-D kernel."""
  k = jax.random.split(jax.random.key(42), 4)
  return {
      "dense": {"kernel": jax.random.normal(k[0], (5, 3)),
                "bias": 0.1 * jax.random.normal(k[1], (3,))},
      "scale": jnp.asarray(0.5, jnp.float32),
      "conv": 0.3 * jax.random.normal(k[3], (3, 3, 2, 4)),
  }


def random_like(params, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)


def _target(params):
  return jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)


def quadratic_loss(params):
  """A loss with a minimum away from the initial params, so gradients stay informative."""
  sq = jax.tree.map(lambda p, t: jnp.sum(jnp.square(p - t)), params, _target(params))
  return 0.5 * sum(jax.tree.leaves(sq))


loss_and_grads = jax.jit(jax.value_and_grad(quadratic_loss))


@functools.lru_cache(maxsize=None)
def rule_and_theta(name):
  rule = optimizers.RULES[name]()
  return rule, rule.init_meta_params(jax.random.key(0))


@functools.lru_cache(maxsize=None)
def compiled_update(rule):
  """One compiled update per rule, with theta and the horizon traced (as meta-training does)."""

  def update(theta, num_steps, grads, state, params, loss):
    return rule.as_optax(theta, num_steps=num_steps).update(grads, state, params, loss=loss)

  return jax.jit(update)


def run_steps(update, state, params, num_steps):
  """``num_steps`` steps on ``quadratic_loss`` with ``update(grads, state, params, loss)``."""
  all_updates, all_states = [], [state]
  for _ in range(num_steps):
    loss, grads = loss_and_grads(params)
    updates, state = update(grads, state, params, loss)
    params = optax.apply_updates(params, updates)
    all_updates.append(updates)
    all_states.append(state)
  return all_updates, all_states


def run_rule(rule, theta, params, num_steps, *, jit=True):
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  if jit:
    update = functools.partial(compiled_update(rule), theta, jnp.asarray(NUM_STEPS))
  else:
    update = lambda g, s, p, loss: tx.update(g, s, p, loss=loss)
  return run_steps(update, tx.init(params), params, num_steps)


def tree_size(tree):
  return sum(int(np.size(x)) for x in jax.tree.leaves(tree))


def assert_trees_close(a, b, rtol=1e-5, atol=1e-7):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol,
                               atol=atol)


def assert_same_structure_shapes_dtypes(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert jnp.shape(x) == jnp.shape(y)
    assert jnp.result_type(x) == jnp.result_type(y)


@pytest.fixture(params=RULE_NAMES)
def name(request):
  return request.param


# -- the optax contract ----------------------------------------------------------------------------


def test_rules_registry():
  assert set(RULE_NAMES) == {"mlp_lopt", "hyperparam_net", "adam", "sgdm", "scaled_lopt",
                             "hyper_lopt"}
  assert isinstance(optimizers.make_rule("mlp_lopt"), optimizers.MLPLOpt)
  with pytest.raises(ValueError, match="unknown rule 'nope'"):
    optimizers.make_rule("nope")


def test_is_gradient_transformation_extra_args(name):
  rule, theta = rule_and_theta(name)
  assert isinstance(rule, optimizers.LearnedRule)
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  assert isinstance(tx, optax.GradientTransformationExtraArgs)
  # The rule's config is JSON-able and rebuilds an equal rule (what checkpoints rely on); `name`
  # and `math_version` are class attributes, not constructor arguments.
  config = json.loads(json.dumps(rule.config()))
  assert type(rule).name == name and "name" not in config and "math_version" not in config
  assert optimizers.make_rule(name, **config) == rule


def test_jit_and_non_jit_agree(name):
  """Eager with a concrete horizon == jitted with theta and the horizon traced."""
  rule, theta = rule_and_theta(name)
  params = make_params()
  eager_updates, eager_states = run_rule(rule, theta, params, 2, jit=False)
  jit_updates, jit_states = run_rule(rule, theta, params, 2, jit=True)
  assert_trees_close(eager_updates, jit_updates)
  assert_trees_close(eager_states, jit_states)
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  assert_trees_close(jax.jit(tx.init)(params), tx.init(params), rtol=0, atol=0)
  # Meta-training passes horizons as traced arrays: another horizon reuses the compiled update.
  loss, grads = loss_and_grads(params)
  traced = compiled_update(rule)(theta, jnp.asarray(7), grads, eager_states[1], params, loss)
  concrete = rule.as_optax(theta, num_steps=7).update(grads, eager_states[1], params, loss=loss)
  assert_trees_close(traced, concrete)


def test_several_steps_reduce_the_loss_and_keep_state_structure(name):
  rule, theta = rule_and_theta(name)
  params = make_params()
  all_updates, states = run_rule(rule, theta, params, 5)
  for state in states[1:]:
    assert_same_structure_shapes_dtypes(state, states[0])
  for updates in all_updates:
    assert_same_structure_shapes_dtypes(updates, params)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
  # Sanity: the steps go downhill on the quadratic.
  final = params
  for updates in all_updates:
    final = optax.apply_updates(final, updates)
  assert float(quadratic_loss(final)) < float(quadratic_loss(params))


def test_state_never_holds_the_params(name):
  rule, theta = rule_and_theta(name)
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  params = make_params()
  state = tx.init(params)
  # At most 3 floats of state per parameter (two momenta and a second moment at most) + a count.
  assert tree_size(state) <= 3 * tree_size(params) + 1

  _, grads = loss_and_grads(params)
  shifted = jax.tree.map(lambda p: p + 1.0, params)
  _, state_a = tx.update(grads, state, params)
  _, state_b = tx.update(grads, state, shifted)
  # No state leaf is (a copy of) the params or of the perturbed params.
  param_leaves = jax.tree.leaves(params) + jax.tree.leaves(shifted)
  for leaf in jax.tree.leaves(state_a) + jax.tree.leaves(state_b):
    for p in param_leaves:
      if jnp.shape(leaf) == jnp.shape(p) and np.size(p) > 1:
        assert not np.allclose(leaf, p), "an optimizer state leaf holds the params"
  # At initial meta-parameters no rule's state depends on the params at all (the params are read
  # by the update, never stored).
  assert_trees_close(state_a, state_b, rtol=0, atol=0)


def test_loss_is_optional_and_unknown_extras_are_ignored(name):
  rule, theta = rule_and_theta(name)
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  params = make_params()
  state = tx.init(params)
  loss, grads = loss_and_grads(params)
  plain = tx.update(grads, state, params)
  extras = tx.update(grads, state, params, step=3, batch_stats={"a": 1}, some_flag=True)
  assert_trees_close(plain, extras, rtol=0, atol=0)
  for value in (loss, float(loss), jnp.reshape(loss, (1,))):
    updates, new_state = tx.update(grads, state, params, loss=value, unrelated="x")
    assert_same_structure_shapes_dtypes(updates, params)
    assert_same_structure_shapes_dtypes(new_state, state)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


def test_update_without_params(name):
  rule, theta = rule_and_theta(name)
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  params = make_params()
  state = tx.init(params)
  _, grads = loss_and_grads(params)
  if name == "sgdm":  # plain SGD with momentum never reads the params
    updates, _ = tx.update(grads, state)
    assert_same_structure_shapes_dtypes(updates, params)
    return
  with pytest.raises(ValueError, match="params"):
    tx.update(grads, state)
  with pytest.raises(ValueError, match="params"):
    tx.update(grads, state, None, loss=1.0)


def test_in_chain_with_gradient_clipping(name):
  rule, theta = rule_and_theta(name)
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  chained = optax.chain(optax.clip_by_global_norm(1.0), tx)
  params = make_params()
  chain_state, state = chained.init(params), tx.init(params)
  chain_update = jax.jit(lambda g, s, p, loss: chained.update(g, s, p, loss=loss))
  for _ in range(2):
    loss, grads = loss_and_grads(params)
    assert float(optax.tree.norm(grads)) > 1.0  # so that clipping matters
    updates, chain_state = chain_update(grads, chain_state, params, loss)
    clipped = jax.tree.map(lambda g: g / optax.tree.norm(grads), grads)
    expected, state = compiled_update(rule)(theta, NUM_STEPS, clipped, state, params, loss)
    assert_trees_close(updates, expected, rtol=1e-5, atol=1e-8)
    params = optax.apply_updates(params, updates)


def test_in_multi_steps(name):
  rule, theta = rule_and_theta(name)
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  multi = optax.MultiSteps(tx, every_k_schedule=2)
  params = make_params()
  multi_state, state = multi.init(params), tx.init(params)
  update = jax.jit(lambda g, s, p, loss: multi.update(g, s, p, loss=loss))
  g1, g2 = random_like(params, 1), random_like(params, 2)

  updates, multi_state = update(g1, multi_state, params, jnp.asarray(2.0))
  for u in jax.tree.leaves(updates):  # not a boundary: no update yet
    np.testing.assert_array_equal(u, np.zeros_like(u))
  assert_same_structure_shapes_dtypes(updates, params)

  updates, multi_state = update(g2, multi_state, params, jnp.asarray(1.9))
  mean_grads = jax.tree.map(lambda a, b: (a + b) / 2, g1, g2)
  expected, state = compiled_update(rule)(theta, NUM_STEPS, mean_grads, state, params,
                                         jnp.asarray(1.9))
  assert_trees_close(updates, expected, rtol=1e-5, atol=1e-8)
  # atol 1e-6: a recurrent per-tensor state (HyperLOpt's GRU) carries the mean gradient's
  # rounding, ~1e-8 absolute, into elements that happen to sit near 0.
  assert_trees_close(multi_state.inner_opt_state, state, rtol=1e-5, atol=1e-6)


# -- errors ----------------------------------------------------------------------------------------


def _first_key(theta):
  return sorted(theta)[0]


def test_theta_missing_key(name):
  rule, theta = rule_and_theta(name)
  bad = dict(theta)
  missing = _first_key(theta)
  del bad[missing]
  with pytest.raises(ValueError, match=f"missing.*{missing}") as info:
    rule.as_optax(bad, num_steps=NUM_STEPS)
  assert "init_meta_params" in str(info.value)


def test_theta_unexpected_key(name):
  rule, theta = rule_and_theta(name)
  bad = {**theta, "surplus": jnp.zeros(())}
  with pytest.raises(ValueError, match="unexpected.*surplus"):
    rule.as_optax(bad, num_steps=NUM_STEPS)


def test_theta_wrong_shape(name):
  rule, theta = rule_and_theta(name)
  key = _first_key(theta)
  bad = {**theta, key: jnp.zeros(jnp.shape(theta[key]) + (2,), jnp.float32)}
  with pytest.raises(ValueError, match=f"{key}.*has shape.*expected"):
    rule.as_optax(bad, num_steps=NUM_STEPS)


def test_theta_integer_dtype(name):
  rule, theta = rule_and_theta(name)
  key = _first_key(theta)
  bad = {**theta, key: jnp.zeros(jnp.shape(theta[key]), jnp.int32)}
  with pytest.raises(ValueError, match=f"{key}.*floating point"):
    rule.as_optax(bad, num_steps=NUM_STEPS)


def test_theta_of_another_rule(name):
  rule, _ = rule_and_theta(name)
  other = "sgdm" if name != "sgdm" else "adam"
  _, other_theta = rule_and_theta(other)
  with pytest.raises(ValueError, match="do not fit the rule"):
    rule.as_optax(other_theta, num_steps=NUM_STEPS)


@pytest.mark.parametrize("num_steps", [0, -3, 0.0, float("inf"), float("nan"), jnp.asarray(0)])
def test_non_positive_or_infinite_num_steps(name, num_steps):
  rule, theta = rule_and_theta(name)
  with pytest.raises(ValueError, match="num_steps must be a positive, finite number"):
    rule.as_optax(theta, num_steps=num_steps)


@pytest.mark.parametrize("num_steps", [None, "abc", "100", True, jnp.ones(3)])
def test_num_steps_of_the_wrong_type(name, num_steps):
  rule, theta = rule_and_theta(name)
  with pytest.raises(TypeError, match="num_steps must be a positive, finite number"):
    rule.as_optax(theta, num_steps=num_steps)


def test_non_finite_theta_rejected_when_concrete_and_traceable_otherwise(name):
  rule, theta = rule_and_theta(name)
  key = _first_key(theta)
  with pytest.raises(ValueError, match=f"{key}.*non-finite"):
    rule.as_optax({**theta, key: jnp.full(jnp.shape(theta[key]), jnp.nan)}, num_steps=NUM_STEPS)
  # Under a trace the same call builds the transformation (no bool() on a tracer).
  params = make_params()
  init = jax.jit(lambda th, n: rule.as_optax(th, num_steps=n).init(params))
  assert_same_structure_shapes_dtypes(init(theta, 7), rule.as_optax(theta, num_steps=7).init(params))
  jax.eval_shape(lambda th: rule.as_optax(th, num_steps=NUM_STEPS).init(params), theta)


def test_integer_params_name_the_leaf(name):
  rule, theta = rule_and_theta(name)
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  params = {**make_params(), "step_counter": jnp.zeros((), jnp.int32)}
  with pytest.raises(TypeError, match=r"step_counter.*int32.*floating point"):
    tx.init(params)


# -- serialization ---------------------------------------------------------------------------------


def _perturbed(theta, seed=3):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(x + 0.01 * rng.normal(size=np.shape(x)), jnp.float32),
                      theta)


def test_serialization_round_trip(name, tmp_path):
  rule, theta = rule_and_theta(name)
  theta = _perturbed(theta)
  path = str(tmp_path / "sub" / f"{name}.safetensors")
  serialization.save_rule(path, rule, theta, note="test", horizon=[10, 20])
  loaded_rule, loaded_theta, info = serialization.load_rule(path)
  assert type(loaded_rule) is type(rule) and loaded_rule == rule
  assert info == {"note": "test", "horizon": [10, 20]}
  assert jax.tree.structure(loaded_theta) == jax.tree.structure(theta)
  for a, b in zip(jax.tree.leaves(loaded_theta), jax.tree.leaves(theta)):
    np.testing.assert_array_equal(a, b)
  params = make_params()
  original, _ = run_rule(rule, theta, params, 2)
  reloaded, _ = run_rule(loaded_rule, loaded_theta, params, 2)
  assert_trees_close(original, reloaded, rtol=0, atol=0)
  assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == [f"{name}.safetensors"]


def test_serialization_keeps_rule_config(tmp_path):
  rule = optimizers.MLPLOpt(hidden_size=3, step_bound=0.5, param_feature=False)
  theta = jax.tree.map(lambda x: np.ones(x.shape, np.float32),
                       jax.eval_shape(rule.init_meta_params, jax.random.key(1)))
  path = str(tmp_path / "r.safetensors")
  serialization.save_rule(path, rule, theta)
  loaded_rule, loaded_theta, _ = serialization.load_rule(path)
  assert loaded_rule == rule
  assert loaded_theta["w_in"].shape == (3, 3)  # g, m_fast, m_slow features


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_file_is_a_value_error(damage, tmp_path):
  rule, theta = rule_and_theta("mlp_lopt")
  path = tmp_path / "r.safetensors"
  serialization.save_rule(str(path), rule, theta)
  data = path.read_bytes()
  if damage == "truncated":
    path.write_bytes(data[:len(data) // 2])
  elif damage == "garbage":
    path.write_bytes(b"\x13\x00\x00\x00\x00\x00\x00\x00not json at all" + bytes(range(200)))
  else:
    path.write_bytes(b"")
  with pytest.raises(ValueError, match="corrupt or truncated"):
    serialization.load_rule(str(path))


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError):
    serialization.load_rule(str(tmp_path / "nothing.safetensors"))


def test_non_finite_meta_params_rejected(tmp_path):
  rule, theta = rule_and_theta("adam")
  path = str(tmp_path / "r.safetensors")
  serialization.save_rule(path, rule, {**theta, "log_lr": jnp.asarray(jnp.nan)})
  with pytest.raises(ValueError, match="non-finite"):
    serialization.load_rule(path)


# -- initialisation as a hand-designed optimizer ---------------------------------------------------


def _sign_agrees(updates, grads):
  for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
    g = np.asarray(g)
    mask = np.abs(g) > 1e-6
    np.testing.assert_array_equal(np.sign(np.asarray(u))[mask], -np.sign(g)[mask])


REFERENCES = {
    # At init, MLPLOpt and HyperparamNet are AdamW(1e-3, wd=1e-5).
    "mlp_lopt": (optimizers.MLPLOpt(),
                 optax.adamw(1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-5)),
    "hyperparam_net": (optimizers.HyperparamNet(),
                       optax.adamw(1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-5)),
    "adam": (optimizers.LearnableAdam(),
             optax.adamw(1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-6)),
    "sgdm": (optimizers.LearnableSGDM(), optax.sgd(0.1, momentum=0.9)),
}


@pytest.mark.parametrize("ref", sorted(REFERENCES))
def test_initial_meta_params_match_hand_designed_optimizer(ref):
  rule, reference = REFERENCES[ref]
  params = make_params()
  got, _ = run_rule(rule, rule.init_meta_params(jax.random.key(0)), params, 5)
  ref_update = jax.jit(lambda g, s, p, loss: reference.update(g, s, p))
  want, _ = run_steps(ref_update, reference.init(params), params, 5)
  assert_trees_close(got, want, rtol=2e-4, atol=1e-9)


@pytest.mark.parametrize("name", ["mlp_lopt", "hyperparam_net"])
def test_learned_rules_start_like_adam(name):
  """Default rules at init: the first step is Adam's, -lr * sign(g) with lr = 1e-3."""
  rule, theta = rule_and_theta(name)
  tx = rule.as_optax(theta, num_steps=NUM_STEPS)
  params = make_params()
  _, grads = loss_and_grads(params)
  updates, _ = tx.update(grads, tx.init(params), params)
  _sign_agrees(updates, grads)
  adam_updates, _ = optax.adam(1e-3).update(grads, optax.adam(1e-3).init(params), params)
  # Equal to within the weight decay (1e-5 * lr * p).
  assert_trees_close(updates, adam_updates, rtol=1e-3, atol=1e-9)


# -- meta-gradients --------------------------------------------------------------------------------


def test_meta_gradient_flows(name):
  rule, theta = rule_and_theta(name)
  params = {"w": make_params()["dense"]["kernel"]}  # one tensor: this compile is the costly one

  def meta_loss(theta):
    tx = rule.as_optax(theta, num_steps=20)

    def step(carry, _):
      p, s = carry
      loss, grads = jax.value_and_grad(quadratic_loss)(p)
      updates, s = tx.update(grads, s, p, loss=loss)
      return (optax.apply_updates(p, updates), s), loss

    _, losses = jax.lax.scan(step, (params, tx.init(params)), None, length=5)
    return jnp.mean(losses[1:])

  grads = jax.jit(jax.grad(meta_loss))(theta)
  assert jax.tree.structure(grads) == jax.tree.structure(theta)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    assert bool(jnp.all(jnp.isfinite(g))), jax.tree_util.keystr(path)
  assert float(optax.tree.norm(grads)) > 0
  assert float(jnp.abs(grads["log_lr"])) > 0  # every rule has a learnable learning rate
  if name in ("mlp_lopt", "hyperparam_net"):
    # The network's output layer starts at zero but must still receive gradient.
    assert float(jnp.max(jnp.abs(grads["w_out"]))) > 0


# -- the cheap per-element arithmetic --------------------------------------------------------------


def test_pexp_is_a_positive_monotone_stand_in_for_exp():
  from metalearn.optimizers.mlp_lopt import pexp
  s = jnp.linspace(-8.0, 5.0, 1301)
  y = np.asarray(pexp(s))
  assert np.all(y > 0) and np.all(np.diff(y) >= 0)
  assert float(pexp(jnp.float32(0.0))) == 1.0
  near = np.abs(np.asarray(s)) <= 1.0
  np.testing.assert_allclose(y[near], np.exp(np.asarray(s)[near]), rtol=0.02)
  # Clipped to [-6, 3], like the exp it replaces.
  assert float(pexp(jnp.float32(-100.0))) == float(pexp(jnp.float32(-6.0))) > 1e-3
  assert float(pexp(jnp.float32(100.0))) == float(pexp(jnp.float32(3.0))) < 20.1


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 6), (9,), ()])
def test_factored_rsqrt_matches_the_full_estimate(shape):
  from metalearn.optimizers import base
  g = jax.random.normal(jax.random.key(1), shape) + 0.03
  v = base.update_second_moment(base.init_second_moment(jnp.zeros(shape)), g, 0.999)
  bc = 1 - 0.999
  row, col = v
  # Adafactor's full-shape estimate of E[g**2], formed explicitly as the reference.
  v_hat = row[..., None] * col / jnp.mean(row) if base.is_factored(shape) else row
  want = jax.lax.rsqrt(v_hat / bc + 1e-16)
  got = jnp.broadcast_to(base.second_moment_rsqrt(v, shape, bc, 1e-8), shape)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_math_version_keys_the_evaluation_fingerprint():
  """Only the math version differs between the two rules compared (same class, same config, same
  theta), so a fingerprint that ignored it would make this test fail."""
  from metalearn.evaluate.runner import fingerprint
  rule = optimizers.MLPLOpt()
  theta = rule.init_meta_params(jax.random.key(0))
  before = fingerprint(rule, theta)
  assert before == fingerprint(optimizers.MLPLOpt(), theta)
  original = optimizers.MLPLOpt.math_version
  try:
    optimizers.MLPLOpt.math_version = original + 1
    assert fingerprint(rule, theta) != before
  finally:
    optimizers.MLPLOpt.math_version = original
  assert fingerprint(rule, theta) == before
