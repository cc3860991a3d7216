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

  def init_meta_params(self, key):
    return {"log_lr": jnp.asarray(LOG_LR, jnp.float32)}

  def as_optax(self, theta, *, num_steps):
    tx = optax.with_extra_args_support(optax.sgd(jnp.exp(theta["log_lr"])))
    return optax.GradientTransformationExtraArgs(
        tx.init, lambda u, s, p=None, **kw: tx.update(u, s, p))


class Point(nnx.Module):
  def __init__(self, rngs):
    del rngs
    self.x = nnx.Param(jnp.ones((DIM,)))


def quadratic_task():
  return Task(TaskSpec("quadratic", dim=DIM), Point, {"a": SCALES}, {"a": SCALES},
              lambda d, key: {"a": d["a"]}, lambda out, b: out,
              lambda m, b: 0.5 * jnp.sum(b["a"] * m.x[...] ** 2))


def true_meta_grad():
  def objective(log_lr):
    t = jnp.arange(HORIZON)
    losses = 0.5 * jnp.sum(SCALES * (1 - jnp.exp(log_lr) * SCALES)[None] ** (2 * t[:, None]), -1)
    return jnp.mean(jnp.log(losses / losses[0]))
  return float(jax.grad(objective)(jnp.float32(LOG_LR)))


def run_estimator(name, members, sigma=0.05):
  task, rule = quadratic_task(), PlainSGD()
  cfg = unroll.UnrollConfig(truncation_length=K, min_horizon=HORIZON, max_horizon=HORIZON,
                            divergence_factor=1e3, stagger=False)
  est = estimators.make_estimator(name, sigma=sigma)
  theta = rule.init_meta_params(None)

  @jax.jit
  def whole_run(key):
    keys = jax.random.split(key, members)
    state = jax.vmap(lambda k: est.init_member(task, rule, theta, task.data, k, cfg))(keys)
    total = jnp.zeros((members,))
    for i in range(HORIZON // K):
      step_keys = jax.random.split(jax.random.fold_in(key, i), members)
      grad, weight, state, _ = jax.vmap(
          lambda s, k: est.member_grad(task, rule, theta, s, task.data, k, cfg))(state, step_keys)
      assert_finite = weight
      total = total + grad["log_lr"] * assert_finite
    return total / (HORIZON // K)   # per-member estimate of the whole-run gradient

  return np.asarray(whole_run(jax.random.key(0)))


def test_closed_form_is_negative():
  # A bigger learning rate lowers this quadratic's loss faster: the meta-gradient is negative.
  assert true_meta_grad() < 0


@pytest.mark.parametrize("name", ["pes", "nres"])
def test_unbiased_estimators_match_closed_form(name):
  truth = true_meta_grad()
  per_member = run_estimator(name, members=512)
  mean, stderr = per_member.mean(), per_member.std() / np.sqrt(per_member.size)
  assert abs(mean - truth) < 4 * stderr + 0.02 * abs(truth), (name, mean, truth, stderr)


def test_tbptt_bias_is_visible_at_short_truncations():
  truth = true_meta_grad()
  est = run_estimator("tbptt", members=4).mean()
  assert abs(est - truth) > 0.2 * abs(truth), (est, truth)


def test_tbptt_is_exact_when_the_truncation_is_the_whole_run():
  global K
  old, K = K, HORIZON
  try:
    est = run_estimator("tbptt", members=2).mean()
  finally:
    K = old
  np.testing.assert_allclose(est, true_meta_grad(), rtol=1e-4)


@pytest.mark.parametrize("name", ["tbptt", "pes", "nres"])
def test_deferred_reset_equals_member_grad_reset(name):
  """The trainer resets under lax.cond after member_grad(reset=False); that must change nothing."""
  task, rule = quadratic_task(), PlainSGD()
  cfg = unroll.UnrollConfig(truncation_length=K, min_horizon=2 * K, max_horizon=4 * K)
  est = estimators.make_estimator(name, sigma=0.05)
  theta = rule.init_meta_params(None)
  keys = jax.random.split(jax.random.key(3), 4)
  state = jax.vmap(lambda k: est.init_member(task, rule, theta, task.data, k, cfg))(keys)
  resets = 0
  for i in range(6):
    k = jax.random.split(jax.random.key(10 + i), 4)
    fn = lambda s, kk, r: est.member_grad(task, rule, theta, s, task.data, kk, cfg, reset=r)
    g1, w1, s1, _ = jax.vmap(lambda s, kk: fn(s, kk, True))(state, k)
    g2, w2, s2, _ = jax.vmap(lambda s, kk: fn(s, kk, False))(state, k)
    resets += int(jnp.sum(jax.vmap(est.needs_reset)(s2)))
    s2 = jax.vmap(lambda s, kk: est.reset(task, rule, theta, s, task.data, kk, cfg))(s2, k)
    for a, b in zip(jax.tree.leaves((g1, w1, s1)), jax.tree.leaves((g2, w2, s2))):
      np.testing.assert_array_equal(a, b)
    state = s1
  assert resets > 0  # the runs did finish and restart within these truncations


def test_initial_loss_is_measured_by_the_first_step():
  task, rule = quadratic_task(), PlainSGD()
  cfg = unroll.UnrollConfig(truncation_length=K, min_horizon=HORIZON, max_horizon=HORIZON)
  theta = rule.init_meta_params(None)
  state = unroll.fresh_state(task, rule, theta, task.data, jax.random.key(0), cfg)
  new, meta_loss, _ = unroll.unroll(task, rule, theta, state, task.data, jax.random.key(1), cfg)
  assert int(new.step) == K
  np.testing.assert_allclose(new.init_loss, 0.5 * float(jnp.sum(SCALES)), rtol=1e-6)
  assert float(meta_loss) < 0  # losses fall below the initial loss
