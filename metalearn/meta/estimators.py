"""Meta-gradient estimators over truncated unrolls: TBPTT, antithetic ES, PES and NRES.

Each estimator works on ONE population member; the trainer ``vmap``s it over the population and
shards the population over devices. The interface:

    est.init_member(task, rule, theta, data, key, cfg) -> member_state
    est.member_grad(task, rule, theta, member_state, data, key, cfg, reset=True)
        -> (grad, weight, member_state, metrics)
    est.needs_reset(member_state) -> bool
    est.reset(task, rule, theta, member_state, data, key, cfg) -> member_state

``member_grad`` restarts finished or diverged runs itself unless ``reset=False``; the trainer
passes ``reset=False`` and calls ``reset`` (with the same ``key``) only when some member on the
device needs it, so a truncation where no run ends pays nothing for restarts. Both paths give the
same result.

``grad`` estimates the gradient of this truncation's meta-loss; ``weight`` is 0 for members masked
out of the meta-gradient (their grad is zeroed) and 1 otherwise. TBPTT masks every run that
diverged; the ES family masks pairs whose two runs both diverged (a pair with one diverged run
compares a clipped loss with a finite one, which is exactly the signal that keeps rules stable).
With noise ``eps ~ N(0, sigma^2 I)``:

* ``tbptt``: backprop through the truncation only; biased (ignores how ``theta`` shaped the state
  the truncation started from), low variance.
* ``es``: antithetic truncated ES, ``g = eps (L(theta+eps) - L(theta-eps)) / (2 sigma^2)`` with
  fresh ``eps`` each truncation; the pair's runs carry their own states. Biased like TBPTT.
* ``pes`` (Vicol et al. 2021): as ES, but weights the difference by the sum of all noise this run
  has seen, ``xi = sum eps``: unbiased for the whole-run objective.
* ``nres`` (Li et al. 2023): one ``eps`` per run, reused by every truncation of it: unbiased too,
  with lower variance than PES.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metalearn.meta import unroll as unroll_lib
from metalearn.meta.unroll import InnerState, UnrollConfig

ESTIMATORS = ("tbptt", "es", "pes", "nres")


def _stagger(state: InnerState, key, cfg: UnrollConfig) -> InnerState:
  """Shortens the first run to a random multiple of K so the population's runs desynchronise."""
  if not cfg.stagger:
    return state
  k = cfg.truncation_length
  n = state.horizon // k
  first = (jax.random.randint(key, (), 1, n + 1) * k).astype(jnp.int32)
  return state._replace(horizon=first)


class PairState(NamedTuple):
  inner: InnerState     # leading axis 2: the +eps and -eps runs
  noise: Any            # PES: accumulated noise xi; NRES: this run's eps; ES: unused (zeros)


def _tree_where(c, a, b):
  return jax.tree.map(lambda x, y: jnp.where(c, x, y), a, b)


@dataclasses.dataclass(frozen=True)
class TBPTT:
  name: str = "tbptt"

  def init_member(self, task, rule, theta, data, key, cfg):
    k1, k2 = jax.random.split(key)
    return _stagger(unroll_lib.fresh_state(task, rule, theta, data, k1, cfg), k2, cfg)

  def needs_reset(self, state):
    return unroll_lib.finished(state)

  def reset(self, task, rule, theta, state, data, key, cfg):
    _, k_reset = jax.random.split(key)
    return unroll_lib.reset_finished(task, rule, theta, state, data, k_reset, cfg)[0]

  def member_grad(self, task, rule, theta, state, data, key, cfg, reset=True):
    k_unroll, _ = jax.random.split(key)

    def meta_loss(th):
      new_state, loss, metrics = unroll_lib.unroll(task, rule, th, state, data, k_unroll, cfg)
      return loss, (new_state, metrics)

    (loss, (state, metrics)), grad = jax.value_and_grad(meta_loss, has_aux=True)(theta)
    ok = ~state.diverged & jnp.all(jnp.array([jnp.all(jnp.isfinite(g))
                                               for g in jax.tree.leaves(grad)]))
    grad = jax.tree.map(lambda g: jnp.where(ok, g, 0.0), grad)
    if reset:
      state = self.reset(task, rule, theta, state, data, key, cfg)
    return grad, ok.astype(jnp.float32), state, {"meta_loss": loss, **metrics}


@dataclasses.dataclass(frozen=True)
class _Antithetic:
  """Shared machinery of the ES family; subclasses choose which noise weights the difference."""
  sigma: float = 0.01
  name: str = "es"

  def _noise(self, theta, key):
    leaves, treedef = jax.tree.flatten(theta)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [self.sigma * jax.random.normal(k, x.shape, jnp.float32)
                                        for k, x in zip(keys, leaves)])

  def init_member(self, task, rule, theta, data, key, cfg):
    k1, k2, k3 = jax.random.split(key, 3)
    single = _stagger(unroll_lib.fresh_state(task, rule, theta, data, k1, cfg), k2, cfg)
    inner = jax.tree.map(lambda x: jnp.stack([x, x]), single)
    noise = (self._noise(theta, k3) if self.name == "nres"
             else jax.tree.map(jnp.zeros_like, theta))
    return PairState(inner, noise)

  def needs_reset(self, state: PairState):
    return jnp.any(unroll_lib.finished(state.inner))

  def reset(self, task, rule, theta, state: PairState, data, key, cfg):
    """Restarts a finished or diverged pair (both runs together, from one shared fresh state)."""
    _, _, k_reset, k_new = jax.random.split(key, 4)
    done = self.needs_reset(state)
    fresh = unroll_lib.fresh_state(task, rule, jax.lax.stop_gradient(theta), data, k_reset, cfg)
    fresh = jax.tree.map(lambda x: jnp.stack([x, x]), fresh)
    inner = _tree_where(done, fresh, state.inner)
    if self.name == "pes":
      noise = _tree_where(done, jax.tree.map(jnp.zeros_like, theta), state.noise)
    elif self.name == "nres":
      noise = _tree_where(done, self._noise(theta, k_new), state.noise)
    else:
      noise = state.noise
    return PairState(inner, noise)

  def member_grad(self, task, rule, theta, state: PairState, data, key, cfg, reset=True):
    k_eps, k_unroll, _, _ = jax.random.split(key, 4)
    if self.name == "nres":
      eps = state.noise
    else:
      eps = self._noise(theta, k_eps)
    thetas = jax.tree.map(lambda t, e: jnp.stack([t + e, t - e]), theta, eps)
    run = lambda th, st: unroll_lib.unroll(task, rule, th, st, data, k_unroll, cfg)
    inner, losses, metrics = jax.vmap(run)(thetas, state.inner)
    weight_noise = jax.tree.map(jnp.add, state.noise, eps) if self.name == "pes" else eps
    diff = losses[0] - losses[1]
    # A run that diverged has its losses clipped at the ceiling from that step on, so a pair where
    # one side diverged still says which direction is safer: keeping it is what stops meta-training
    # from drifting into unstable rules (masking every diverged pair hides that signal). A pair
    # where both sides diverged carries no information and is masked, as is any non-finite result.
    ok = ~jnp.all(inner.diverged) & jnp.isfinite(diff)
    scale = jnp.where(ok, diff, 0.0) / (2 * self.sigma**2)
    grad = jax.tree.map(lambda n: n * scale, weight_noise)

    new_state = PairState(inner, weight_noise if self.name == "pes" else state.noise)
    if reset:
      new_state = self.reset(task, rule, theta, new_state, data, key, cfg)
    out = {"meta_loss": jnp.mean(losses), "loss": jnp.mean(metrics["loss"]),
           "diverged": jnp.any(metrics["diverged"])}
    return grad, ok.astype(jnp.float32), new_state, out


@dataclasses.dataclass(frozen=True)
class ES(_Antithetic):
  name: str = "es"


@dataclasses.dataclass(frozen=True)
class PES(_Antithetic):
  name: str = "pes"


@dataclasses.dataclass(frozen=True)
class NRES(_Antithetic):
  name: str = "nres"


def make_estimator(name: str, sigma: float = 0.01):
  if name == "tbptt":
    return TBPTT()
  if name in ("es", "pes", "nres"):
    if not sigma > 0:
      raise ValueError(f"es_sigma must be > 0 for the {name} estimator, got {sigma}.")
    return {"es": ES, "pes": PES, "nres": NRES}[name](sigma=sigma)
  raise ValueError(f"unknown estimator {name!r}; choose one of {list(ESTIMATORS)}.")


def inner_runs_per_member(name: str) -> int:
  return 1 if name == "tbptt" else 2
