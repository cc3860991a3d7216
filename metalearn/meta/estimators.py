"""Meta-gradient estimators over truncated unrolls: TBPTT, antithetic ES, PES and NRES.

Each estimator is one small class (as in evosax) that works on ONE population member; the outer
step ``vmap``s it over the population and shards the population over devices:

    est.init(problem, theta, key) -> member_state
    est.grad(problem, theta, state, key) -> (grad, weight, state, metrics)   # one truncation
    est.needs_reset(state) -> bool
    est.reset(problem, theta, state, key) -> state                           # same key as grad
    est.step(problem, theta, state, key)  = grad, then reset: what the outer step computes

``problem`` bundles the task, the rule, the unroll config and the data (``unroll.Problem``). The
outer step calls ``grad`` and then ``reset`` under ``lax.cond`` only when some member on the device
needs it, so a truncation where no run ends pays nothing for restarts; ``step`` gives the same.

``grad`` estimates the gradient of this truncation's meta-loss; ``weight`` is 0 for members masked
out of the meta-gradient (their grad is zeroed) and 1 otherwise. TBPTT masks every run that
diverged; the ES family masks pairs whose two runs both diverged (a pair with one diverged run
compares a clipped loss with a finite one, which is exactly the signal that keeps rules stable).
With noise ``eps ~ N(0, sigma^2 I)``:

* ``TBPTT``: backprop through the truncation only; biased (ignores how ``theta`` shaped the state
  the truncation started from), low variance.
* ``ES``: antithetic truncated ES, ``g = eps (L(theta+eps) - L(theta-eps)) / (2 sigma^2)`` with
  fresh ``eps`` each truncation; the pair's runs carry their own states. Biased like TBPTT.
* ``PES`` (Vicol et al. 2021): as ES, but weights the difference by the sum of all noise this run
  has seen, ``xi = sum eps``: unbiased for the whole-run objective.
* ``NRES`` (Li et al. 2023): one ``eps`` per run, reused by every truncation of it: unbiased too,
  with lower variance than PES.

With ``sign=True`` the ES family uses only the sign of each pair's loss difference (as VeLO does),
``g = eps sign(L+ - L-) / (2 sigma)``, so tasks whose losses move a lot do not dominate the mean.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metalearn.meta import unroll as unroll_lib
from metalearn.meta.unroll import InnerState, Problem


def _stagger(state: InnerState, key, cfg) -> InnerState:
  """Shortens the first run to a random multiple of K so the population's runs desynchronise."""
  if not cfg.stagger:
    return state
  k = cfg.truncation_length
  n = state.horizon // k
  first = (jax.random.randint(key, (), 1, n + 1) * k).astype(jnp.int32)
  return state._replace(horizon=first)


def _tree_where(c, a, b):
  return jax.tree.map(lambda x, y: jnp.where(c, x, y), a, b)


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


class Estimator(abc.ABC):
  """The interface above; ``runs_per_member`` inner runs advance per member and truncation."""

  name: ClassVar[str]
  runs_per_member: ClassVar[int]

  @abc.abstractmethod
  def init(self, problem: Problem, theta, key): ...

  @abc.abstractmethod
  def grad(self, problem: Problem, theta, state, key): ...

  @abc.abstractmethod
  def needs_reset(self, state) -> jax.Array: ...

  @abc.abstractmethod
  def reset(self, problem: Problem, theta, state, key): ...

  def step(self, problem: Problem, theta, state, key):
    grad, weight, state, metrics = self.grad(problem, theta, state, key)
    return grad, weight, self.reset(problem, theta, state, key), metrics


@dataclasses.dataclass(frozen=True)
class TBPTT(Estimator):
  """Truncated backpropagation through time (see module docstring)."""

  name: ClassVar[str] = "tbptt"
  runs_per_member: ClassVar[int] = 1

  def init(self, problem, theta, key):
    k1, k2 = jax.random.split(key)
    return _stagger(unroll_lib.fresh_state(problem, theta, k1), k2, problem.cfg)

  def needs_reset(self, state):
    return unroll_lib.finished(state)

  def reset(self, problem, theta, state, key):
    _, k_reset = jax.random.split(key)
    return unroll_lib.reset_finished(problem, theta, state, k_reset)[0]

  def grad(self, problem, theta, state, key):
    k_unroll, _ = jax.random.split(key)

    def meta_loss(th):
      new_state, loss, metrics = unroll_lib.unroll(problem, th, state, k_unroll)
      return loss, (new_state, metrics)

    (loss, (state, metrics)), grad = jax.value_and_grad(meta_loss, has_aux=True)(theta)
    ok = ~state.diverged & _all_finite(grad)
    grad = jax.tree.map(lambda g: jnp.where(ok, g, 0.0), grad)
    return grad, ok.astype(jnp.float32), state, {"meta_loss": loss, **metrics}


class PairState(NamedTuple):
  inner: InnerState     # leading axis 2: the +eps and -eps runs
  noise: Any            # PES: accumulated noise xi; NRES: this run's eps; ES: () (none kept)


@dataclasses.dataclass(frozen=True)
class _Antithetic(Estimator):
  """Shared machinery of the ES family; subclasses say which noise they keep and weight by."""

  sigma: float = 0.01
  sign: bool = False
  runs_per_member: ClassVar[int] = 2

  def __post_init__(self):
    if not self.sigma > 0:
      raise ValueError(f"es_sigma must be > 0 for the {self.name} estimator, got {self.sigma}.")

  def _sample(self, theta, key):
    return jax.tree.map(lambda x: self.sigma * x,
                        optax.tree.random_like(key, theta, jax.random.normal, jnp.float32))

  # What each subclass chooses: the noise a new run keeps, this truncation's eps, the noise the
  # loss difference is weighted by, and the noise kept for the next truncation.
  def _run_noise(self, theta, key):
    return ()

  def _eps(self, state: PairState, theta, key):
    return self._sample(theta, key)

  def _weight_noise(self, state: PairState, eps):
    return eps

  def _kept_noise(self, state: PairState, weight_noise):
    return state.noise

  def init(self, problem, theta, key):
    k1, k2, k3 = jax.random.split(key, 3)
    single = _stagger(unroll_lib.fresh_state(problem, theta, k1), k2, problem.cfg)
    inner = jax.tree.map(lambda x: jnp.stack([x, x]), single)
    return PairState(inner, self._run_noise(theta, k3))

  def needs_reset(self, state: PairState):
    return jnp.any(unroll_lib.finished(state.inner))

  def reset(self, problem, theta, state: PairState, key):
    """Restarts a finished or diverged pair (both runs together, from one shared fresh state)."""
    _, _, k_reset, k_new = jax.random.split(key, 4)
    done = self.needs_reset(state)
    fresh = unroll_lib.fresh_state(problem, jax.lax.stop_gradient(theta), k_reset)
    inner = _tree_where(done, jax.tree.map(lambda x: jnp.stack([x, x]), fresh), state.inner)
    return PairState(inner, _tree_where(done, self._run_noise(theta, k_new), state.noise))

  def grad(self, problem, theta, state: PairState, key):
    k_eps, k_unroll, _, _ = jax.random.split(key, 4)
    eps = self._eps(state, theta, k_eps)
    thetas = jax.tree.map(lambda t, e: jnp.stack([t + e, t - e]), theta, eps)
    run = lambda th, st: unroll_lib.unroll(problem, th, st, k_unroll)
    inner, losses, metrics = jax.vmap(run)(thetas, state.inner)
    weight_noise = self._weight_noise(state, eps)
    diff = losses[0] - losses[1]
    # A pair where one side diverged still says which direction is safer (its losses are clipped
    # at the ceiling): keeping it is what stops meta-training from drifting into unstable rules. A
    # pair where both sides diverged carries no information and is masked, as is any non-finite
    # result.
    ok = ~jnp.all(inner.diverged) & jnp.isfinite(diff)
    diff = jnp.where(ok, diff, 0.0)
    scale = jnp.sign(diff) / (2 * self.sigma) if self.sign else diff / (2 * self.sigma**2)
    grad = jax.tree.map(lambda n: n * scale, weight_noise)
    new_state = PairState(inner, self._kept_noise(state, weight_noise))
    out = {"meta_loss": jnp.mean(losses), "loss": jnp.mean(metrics["loss"]),
           "diverged": jnp.any(metrics["diverged"])}
    return grad, ok.astype(jnp.float32), new_state, out


@dataclasses.dataclass(frozen=True)
class ES(_Antithetic):
  """Antithetic truncated ES: fresh noise each truncation, none kept."""

  name: ClassVar[str] = "es"


@dataclasses.dataclass(frozen=True)
class PES(_Antithetic):
  """Persistent ES: fresh noise each truncation, weighted by the run's accumulated noise."""

  name: ClassVar[str] = "pes"

  def _run_noise(self, theta, key):
    return jax.tree.map(jnp.zeros_like, theta)

  def _weight_noise(self, state, eps):
    return jax.tree.map(jnp.add, state.noise, eps)

  def _kept_noise(self, state, weight_noise):
    return weight_noise


@dataclasses.dataclass(frozen=True)
class NRES(_Antithetic):
  """Noise-reuse ES: one noise draw per run, reused by each of its truncations."""

  name: ClassVar[str] = "nres"

  def _run_noise(self, theta, key):
    return self._sample(theta, key)

  def _eps(self, state, theta, key):
    return state.noise


ESTIMATORS = {cls.name: cls for cls in (TBPTT, ES, PES, NRES)}


def make_estimator(name: str, sigma: float = 0.01, sign: bool = False) -> Estimator:
  """The estimator called ``name`` (``tbptt``, ``es``, ``pes``, ``nres``)."""
  if name not in ESTIMATORS:
    raise ValueError(f"unknown estimator {name!r}; choose one of {list(ESTIMATORS)}.")
  if name == "tbptt":
    return TBPTT()
  return ESTIMATORS[name](sigma=sigma, sign=sign)
