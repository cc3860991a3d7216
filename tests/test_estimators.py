"""Estimator bias on a problem whose meta-gradient is known in closed form.

SGD with learning rate exp(log_lr) on a deterministic diagonal quadratic: x_t = (1 - lr a)^t x_0, so
the whole-run meta-loss mean_t log(L_t / L_0) is a closed-form function of log_lr and jax.grad gives
its exact meta-gradient. PES and NRES, summed over the run's truncations, must match it within
statistical error; TBPTT at a short truncation must visibly not.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from metalearn.meta import estimators, unroll
from metalearn.optimizers.base import LearnedRule
from metalearn.tasks.base import Task, TaskSpec

DIM, HORIZON, K, LOG_LR = 6, 40, 5, np.log(0.08)
SCALES = jnp.asarray(np.logspace(-1, 1, DIM), jnp.float32)


@dataclasses.dataclass(frozen=True)
class PlainSGD(LearnedRule):
  """x <- x - exp(log_lr) g: the smallest possible learned rule."""

  name = "plain_sgd"

  def init_meta_params(self, key):
    return {"log_lr": jnp.asarray(LOG_LR, jnp.float32)}

  def transformation(self, theta, num_steps):
    tx = optax.with_extra_args_support(optax.sgd(jnp.exp(theta["log_lr"])))
    return optax.GradientTransformationExtraArgs(
        tx.init, lambda u, s, p=None, **kw: tx.update(u, s, p))

  def as_optax(self, theta, *, num_steps):  # the base's template checks are not needed here
    return self.transformation(theta, num_steps)


class Point(nnx.Module):
  def __init__(self, rngs):
    del rngs
    self.x = nnx.Param(jnp.ones((DIM,)))


def quadratic_task():
  return Task(TaskSpec("quadratic", dim=DIM), Point, {"a": SCALES}, {"a": SCALES},
              lambda d, key: {"a": d["a"]}, lambda m, b: 0.5 * jnp.sum(b["a"] * m.x[...] ** 2))


def true_meta_grad():
  def objective(log_lr):
    t = jnp.arange(HORIZON)
    losses = 0.5 * jnp.sum(SCALES * (1 - jnp.exp(log_lr) * SCALES)[None] ** (2 * t[:, None]), -1)
    return jnp.mean(jnp.log(losses / losses[0]))
  return float(jax.grad(objective)(jnp.float32(LOG_LR)))


def problem(k=K, min_horizon=HORIZON, max_horizon=HORIZON, **kw):
  task = quadratic_task()
  cfg = unroll.UnrollConfig(truncation_length=k, min_horizon=min_horizon,
                            max_horizon=max_horizon, **kw)
  return unroll.Problem(task, PlainSGD(), cfg, task.data)


def run_estimator(name, members, sigma=0.05, k=K):
  prob = problem(k, divergence_factor=1e3, stagger=False)
  est = estimators.make_estimator(name, sigma=sigma)
  theta = prob.rule.init_meta_params(None)

  @jax.jit
  def whole_run(key):
    keys = jax.random.split(key, members)
    state = jax.vmap(lambda kk: est.init(prob, theta, kk))(keys)
    total, weights = jnp.zeros((members,)), jnp.zeros((members,))
    for i in range(HORIZON // k):
      step_keys = jax.random.split(jax.random.fold_in(key, i), members)
      grad, weight, state, _ = jax.vmap(lambda s, kk: est.step(prob, theta, s, kk))(state,
                                                                                    step_keys)
      total, weights = total + grad["log_lr"], weights + weight
    return total / (HORIZON // k), weights   # per-member estimate of the whole-run gradient

  per_member, weights = whole_run(jax.random.key(0))
  # No run of this stable problem diverged or was masked: every truncation counted.
  np.testing.assert_array_equal(weights, HORIZON // k)
  return np.asarray(per_member)


def test_closed_form_is_negative():
  # A bigger learning rate lowers this quadratic's loss faster: the meta-gradient is negative.
  assert true_meta_grad() < 0


@pytest.mark.parametrize("name", ["pes", "nres"])
def test_unbiased_estimators_match_closed_form(name):
  truth = true_meta_grad()
  per_member = run_estimator(name, members=512)
  mean, stderr = per_member.mean(), per_member.std() / np.sqrt(per_member.size)
  # The tolerance grows with the standard error, so bound that too: an estimator whose variance
  # blew up would otherwise pass by being uninformative.
  assert stderr < 0.25 * abs(truth), (name, stderr, truth)
  assert abs(mean - truth) < 4 * stderr + 0.02 * abs(truth), (name, mean, truth, stderr)


def test_tbptt_bias_is_visible_at_short_truncations():
  truth = true_meta_grad()
  est = run_estimator("tbptt", members=4).mean()
  assert abs(est - truth) > 0.2 * abs(truth), (est, truth)


def test_tbptt_is_exact_when_the_truncation_is_the_whole_run():
  est = run_estimator("tbptt", members=2, k=HORIZON).mean()
  np.testing.assert_allclose(est, true_meta_grad(), rtol=1e-4)


@pytest.mark.parametrize("name", ["tbptt", "pes", pytest.param("es", marks=pytest.mark.slow),
                                  pytest.param("nres", marks=pytest.mark.slow)])
def test_deferred_reset_equals_step(name):
  """The outer step resets under lax.cond after grad; that must equal est.step (grad + reset)."""
  prob = problem(min_horizon=2 * K, max_horizon=4 * K)
  est = estimators.make_estimator(name, sigma=0.05)
  theta = prob.rule.init_meta_params(None)
  keys = jax.random.split(jax.random.key(3), 4)
  state = jax.vmap(lambda k: est.init(prob, theta, k))(keys)
  resets = 0
  for i in range(6):
    k = jax.random.split(jax.random.key(10 + i), 4)
    g1, w1, s1, _ = jax.vmap(lambda s, kk: est.step(prob, theta, s, kk))(state, k)
    g2, w2, s2, _ = jax.vmap(lambda s, kk: est.grad(prob, theta, s, kk))(state, k)
    resets += int(jnp.sum(jax.vmap(est.needs_reset)(s2)))
    s2 = jax.vmap(lambda s, kk: est.reset(prob, theta, s, kk))(s2, k)
    for a, b in zip(jax.tree.leaves((g1, w1, s1)), jax.tree.leaves((g2, w2, s2))):
      np.testing.assert_array_equal(a, b)
    state = s1
  assert resets > 0  # the runs did finish and restart within these truncations


def test_each_estimator_is_its_own_class():
  assert {n: type(estimators.make_estimator(n)).__name__ for n in estimators.ESTIMATORS} == {
      "tbptt": "TBPTT", "es": "ES", "pes": "PES", "nres": "NRES"}
  with pytest.raises(ValueError, match="unknown estimator 'foo'"):
    estimators.make_estimator("foo")
  with pytest.raises(ValueError, match="es_sigma must be > 0"):
    estimators.make_estimator("pes", sigma=0.0)


def test_sign_estimator_uses_only_the_sign_of_the_difference():
  """sign=True: g = eps sign(L+ - L-) / (2 sigma), whatever the size of the loss difference."""
  prob = problem(stagger=False)
  theta = PlainSGD().init_meta_params(None)
  by_value = estimators.make_estimator("es", sigma=0.05)
  by_sign = estimators.make_estimator("es", sigma=0.05, sign=True)
  state = by_value.init(prob, theta, jax.random.key(0))
  key = jax.random.key(1)
  g_value = float(by_value.grad(prob, theta, state, key)[0]["log_lr"])
  g_sign = float(by_sign.grad(prob, theta, state, key)[0]["log_lr"])
  eps = float(by_value._sample(theta, jax.random.split(key, 4)[0])["log_lr"])
  assert g_value != 0.0 and np.sign(g_sign) == np.sign(g_value)
  np.testing.assert_allclose(abs(g_sign), abs(eps) / (2 * 0.05), rtol=1e-6)


def test_initial_loss_is_measured_by_the_first_step():
  prob = problem()
  theta = prob.rule.init_meta_params(None)
  state = unroll.fresh_state(prob, theta, jax.random.key(0))
  new, meta_loss, _ = unroll.unroll(prob, theta, state, jax.random.key(1))
  assert int(new.step) == K
  np.testing.assert_allclose(new.init_loss, 0.5 * float(jnp.sum(SCALES)), rtol=1e-6)
  assert float(meta_loss) < 0  # losses fall below the initial loss


def test_weight_scale_augmentation_reparameterises_the_run():
  """With weight_scale, a run trains q = p / s on L(s q): same loss at init, params 1/s."""
  prob = problem(weight_scale=(100.0, 1000.0))
  theta = prob.rule.init_meta_params(None)
  state = unroll.fresh_state(prob, theta, jax.random.key(0))
  s = float(state.scale)
  assert 100.0 <= s <= 1000.0
  np.testing.assert_allclose(jax.tree.leaves(state.params)[0], np.ones(DIM) / s, rtol=1e-6)
  new, _, _ = unroll.unroll(prob, theta, state, jax.random.key(1))
  np.testing.assert_allclose(new.init_loss, 0.5 * float(jnp.sum(SCALES)), rtol=1e-5)
