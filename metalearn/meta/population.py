"""A population of learned rules meta-trained side by side, each by a learned rule (self-improvement).

    pop = Population(config, mesh)
    members = pop.init_members()                      # [P] stacked, sharded over the mesh
    members, meta_loss = pop.step(members, meta_theta, step)   # one outer step of every member
    fitness = pop.fitness(members["theta"])           # [P] on the meta-validation tasks
    members = pop.exploit_explore(members, parents, generation)

A member is ``{"theta", "outer_state", "runs"}``: its meta-parameters, the state of the
meta-optimizer that trains it, and its estimator state (its own inner runs, one population of
``population_per_task`` per task type), plus ``"log_meta_step"`` when ``meta_step_scale`` is
set. All members are stacked along a leading axis of size ``P`` that is sharded over the
``'task'`` mesh axis: ``jax.jit`` + ``jax.shard_map`` over members, ``vmap`` over the members on
a device. Members never communicate inside a step, so every member's computation is the same
on 1 and on 8 devices (keys are split per member, not per device).

The meta-optimizers (``config.meta_optimizer``: best, elite, proven, own, adam) and the horizon
a learned one is told (``meta_optimizer_horizon``) are described in ``self_improve.py``'s
docstring and config; ``outer_tx`` and ``restarts_outer_state`` implement them (``step`` takes
one rule, or a stack and each member's index into it for ``proven``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

import metalearn.parallel as parallel
from metalearn.meta import config as config_lib
from metalearn.meta import estimators as est_lib
from metalearn.meta.fitness import Fitness, fitness_horizons
from metalearn.meta.self_improve_config import meta_optimizer_rule
from metalearn.meta.step import task_specs_from_config, unroll_config
from metalearn.meta.unroll import Problem
from metalearn.optimizers import make_rule
from metalearn.tasks import make_task


# XLA:CPU compiles at LLVM level 0 in a fraction of the default's time, but the program then runs
# several times slower (benchmarks/fitness_compile.py, 0.12.0: member step 4.2x at 4 members;
# fitness 1.5x on linreg up to 24x on a CNN; the default costs 1-14 s more to compile). So level
# 0 only where a run is too short to win that back: fewer than these member-steps (outer steps x
# members) for the step program, fitness inner steps (longest horizon x fitness calls) for fitness.
STEP_WORK_FAST = 5_000
FITNESS_WORK_FAST = 2_000


def cpu_fast_compile(work: int, threshold: int) -> dict | None:
  """Compiler options for a program that runs ``work`` steps in all: LLVM level 0 on CPU when
  ``work < threshold`` (see above), else XLA's defaults."""
  if jax.default_backend() == "cpu" and work < threshold:
    return {"xla_backend_optimization_level": 0}
  return None


def fitness_calls(config) -> int:
  """How many times a run measures fitness: each generation's end (and generation 0), plus
  every ``accept_every`` outer steps inside a generation."""
  per_generation = 1 + (config.generation_steps // config.accept_every if config.accept_every
                        else 0)
  return 1 + config.num_generations * per_generation


class Population:
  """Everything the self-improvement loop computes on members (see module docstring)."""

  def __init__(self, config, mesh):
    self.config, self.mesh = config, mesh
    self.size = config.population_size
    self.rule = make_rule(config.rule, **config_lib.plain(config.rule_kwargs))
    self.outer_rule = meta_optimizer_rule(config)   # the same meta-parameters, as meta-optimizer
    self.specs = task_specs_from_config(config)
    data_dir = config.data_dir or None
    self.tasks = [make_task(s, data_dir=data_dir) for s in self.specs]
    self.estimator = est_lib.make_estimator(config.estimator, sigma=config.es_sigma,
                                            sign=config.es_sign)
    self.ucfg = unroll_config(config)
    self.total_steps = config.num_generations * config.generation_steps
    self.datas = [parallel.put_replicated(t.data, mesh) for t in self.tasks]
    self.inner_steps_per_outer = (self.size * len(self.tasks) * config.population_per_task
                                  * config.truncation_length * self.estimator.runs_per_member)
    self._pop = parallel.population_sharding(mesh)
    self._step_fn = None
    self._jit_options = cpu_fast_compile(self.total_steps * self.size, STEP_WORK_FAST)
    fitness_work = max(fitness_horizons(config)) * fitness_calls(config)
    self.fit = Fitness(config, self.rule, mesh,                      # see fitness.py
                       cpu_fast_compile(fitness_work, FITNESS_WORK_FAST))

  # -- the meta-optimizer ------------------------------------------------------------------------
  def outer_tx(self, meta_theta) -> optax.GradientTransformation:
    c = self.config
    clip = (optax.clip_by_global_norm(c.outer_grad_clip) if c.outer_grad_clip > 0
            else optax.identity())
    if c.meta_optimizer == "adam":
      return optax.chain(clip, optax.adam(c.outer_lr))
    return optax.chain(clip, self.outer_rule.as_optax(meta_theta, num_steps=self.outer_horizon))

  @property
  def outer_horizon(self) -> int:
    """The number of steps a learned meta-optimizer is told it runs for (module docstring)."""
    return self.config.meta_optimizer_horizon or self.total_steps

  def restarts_outer_state(self, step: int) -> bool:
    """Whether every member's meta-optimizer state restarts from ``init`` before outer ``step``."""
    h = self.config.meta_optimizer_horizon
    return bool(h) and self.config.meta_optimizer != "adam" and step > 0 and step % h == 0

  # -- members -----------------------------------------------------------------------------------
  def _init_theta(self, key):
    k_init, k_noise = jax.random.split(key)
    theta = self.rule.init_meta_params(k_init)
    if self.config.init == "adam_like":
      return theta
    noise = optax.tree.random_like(k_noise, theta, jax.random.normal, jnp.float32)
    return jax.tree.map(lambda t, n: t + self.config.init_scale * n, theta, noise)

  def _init_member(self, key, datas):
    k_theta, k_runs = jax.random.split(key)
    theta = self._init_theta(k_theta)
    runs = []
    for i, problem in enumerate(self.problems(datas)):
      keys = jax.random.split(jax.random.fold_in(k_runs, i), self.config.population_per_task)
      runs.append(jax.vmap(lambda k, p=problem: self.estimator.init(p, theta, k))(keys))
    member = {"theta": theta, "outer_state": self.outer_tx(theta).init(theta), "runs": runs}
    if self.tunes_meta_step:
      lo, hi = np.log(np.asarray(self.config.meta_step_scale, np.float64))
      member["log_meta_step"] = jax.random.uniform(jax.random.fold_in(key, 7), (), jnp.float32,
                                                   lo, hi)
    return member

  @property
  def tunes_meta_step(self) -> bool:
    """Whether members carry their own meta-step multiplier (``meta_step_scale`` is a range)."""
    lo, hi = self.config.meta_step_scale
    return not lo == hi == 1.0

  def problems(self, datas) -> list[Problem]:
    return [Problem(t, self.rule, self.ucfg, d) for t, d in zip(self.tasks, datas)]

  def _member_keys(self, key):
    return jax.random.split(key, self.size)

  def _init_all(self, key, datas):
    return jax.vmap(self._init_member, in_axes=(0, None))(self._member_keys(key), datas)

  def abstract_members(self):
    """Shapes, dtypes and shardings of the members (what a checkpoint restores into)."""
    abstract = jax.eval_shape(self._init_all, jax.random.key(0), self.datas)
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self._pop),
                        abstract)

  def init_members(self):
    key = jax.random.fold_in(jax.random.key(self.config.seed), 0)
    return jax.jit(self._init_all, out_shardings=self._pop,
                   compiler_options=cpu_fast_compile(1, 2))(key, self.datas)   # runs once

  # -- one outer step of every member ------------------------------------------------------------
  def _member_step(self, member, meta_thetas, which, datas, key, restart):
    est, theta = self.estimator, member["theta"]
    meta_theta = (meta_thetas if which is None   # one rule for all, or this member's of a stack
                  else jax.tree.map(lambda m: m[which], meta_thetas))
    grad_sum, weight, meta_loss, runs = None, 0.0, 0.0, []
    for i, (problem, r) in enumerate(zip(self.problems(datas), member["runs"])):
      keys = jax.random.split(jax.random.fold_in(key, i), self.config.population_per_task)
      g, w, r, metrics = jax.vmap(lambda s, k, p=problem: est.grad(p, theta, s, k))(r, keys)
      r = jax.vmap(lambda s, k, p=problem: est.reset(p, theta, s, k))(r, keys)
      g = jax.tree.map(lambda x: jnp.sum(x, 0), g)
      grad_sum = g if grad_sum is None else jax.tree.map(jnp.add, grad_sum, g)
      weight = weight + jnp.sum(w)
      meta_loss = meta_loss + jnp.mean(metrics["meta_loss"]) / len(self.tasks)
      runs.append(r)
    grad = jax.tree.map(lambda g: g / jnp.maximum(weight, 1.0), grad_sum)
    tx = self.outer_tx(theta if self.config.meta_optimizer == "own" else meta_theta)
    state = jax.lax.cond(restart, lambda: tx.init(theta), lambda: member["outer_state"])
    updates, outer_state = tx.update(grad, state, theta)
    if self.tunes_meta_step:   # the member's own multiplier on its meta-optimizer's steps
      scale = jnp.exp(member["log_meta_step"])
      updates = jax.tree.map(lambda u: u * scale.astype(u.dtype), updates)
    new_theta = optax.apply_updates(theta, updates)
    finite = est_lib._all_finite(new_theta) & est_lib._all_finite(outer_state)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    out = {"theta": keep(new_theta, theta),
           "outer_state": keep(outer_state, member["outer_state"]), "runs": runs}
    if self.tunes_meta_step:
      out["log_meta_step"] = member["log_meta_step"]
    return out, meta_loss

  def _step(self, members, meta_thetas, which, datas, key, restart):
    local = jax.vmap(self._member_step, in_axes=(0, None, 0, None, 0, None))
    return jax.shard_map(local, mesh=self.mesh,
                         in_specs=(P(parallel.AXIS), P(), P(parallel.AXIS), P(),
                                   P(parallel.AXIS), P()),
                         out_specs=(P(parallel.AXIS), P(parallel.AXIS)),
                         check_vma=False)(members, meta_thetas, which, datas,
                                          self._member_keys(key), restart)

  def step(self, members, meta_theta, step: int, which=None):
    """One outer step of every member; returns (members, per-member meta-loss). Donates members.

    ``meta_theta``: the meta-parameters of the rule that trains every member; or, with ``which``
    ([P] ints), a stack of K rules' meta-parameters (leading axis K), member i trained by rule
    ``which[i]`` (``meta_optimizer="proven"``: the incumbent and the challenger)."""
    if self._step_fn is None:
      self._step_fn = jax.jit(self._step, out_shardings=(self._pop, self._pop),
                              donate_argnums=(0,), compiler_options=self._jit_options)
    key = jax.random.fold_in(jax.random.key(self.config.seed), 1_000_000 + step)
    restart = jnp.asarray(self.restarts_outer_state(step))
    if which is not None:
      which = jax.device_put(np.asarray(which, np.int32), self._pop)
    return self._step_fn(members, meta_theta, which, self.datas, key, restart)

  # -- fitness on the meta-validation tasks (fitness.py) -----------------------------------------
  def task_fitness(self, thetas) -> np.ndarray:
    """[P, T] fitness of the members' rules on each of the T meta-validation tasks (lower is
    better; see ``fitness.py``), each the mean over ``fitness_seeds`` runs, and no lower than
    ``fitness_floor`` when that is set (< 0). Every decision (acceptance, the best, PBT, the
    proven meta-optimizer) and the lineage use these values."""
    tf = self.fit.task_fitness(thetas)
    floor = self.config.fitness_floor
    return np.maximum(tf, floor) if floor < 0 else tf

  def fitness(self, thetas) -> np.ndarray:
    """[P] fitness of the members' rules: the mean of ``task_fitness`` over the tasks."""
    return self.task_fitness(thetas).mean(axis=1)

  # -- PBT: exploit and explore ------------------------------------------------------------------
  def parents(self, fitness: np.ndarray, generation: int) -> np.ndarray:
    """Whom each member continues from: itself, or (bottom quantile) a random top-quantile member.

    Drawn on the host from (seed, generation), so the choice never depends on the device count.
    Non-finite fitness ranks last.
    """
    f = np.where(np.isfinite(fitness), fitness, np.inf)
    order = np.argsort(f, kind="stable")
    n = max(1, int(self.size * self.config.exploit_fraction))
    rng = np.random.default_rng([self.config.seed, generation])
    parents = np.arange(self.size)
    parents[order[self.size - n:]] = order[:n][rng.integers(0, n, n)]
    return parents

  def exploit_explore(self, members, parents: np.ndarray, generation: int):
    """Copied members take their parent's theta, meta-optimizer state and inner runs, then their
    theta is perturbed by ``explore_sigma`` x N(0, 1) per element and (with ``meta_step_scale``
    a range) their meta-step multiplier by a factor of 1.25 or 1/1.25; the others are unchanged.

    Done on the host (the members are small): a gather over every leaf compiles slowly on CPU.
    """
    parents = np.asarray(parents)
    copied = parents != np.arange(self.size)
    members = jax.tree.map(lambda x: np.asarray(x)[parents], jax.device_get(members))
    rng = np.random.default_rng([self.config.seed, 2, generation])
    sigma = np.float32(self.config.explore_sigma)

    def explore(t):
      noise = rng.standard_normal(t.shape).astype(t.dtype)
      return t + np.where(copied.reshape((-1,) + (1,) * (t.ndim - 1)), sigma * noise, 0)

    members["theta"] = jax.tree.map(explore, members["theta"])
    if self.tunes_meta_step:
      sign = rng.choice(np.array([-1.0, 1.0], np.float32), self.size)
      members["log_meta_step"] = members["log_meta_step"] + np.where(
          copied, sign * np.float32(np.log(1.25)), np.float32(0)).astype(np.float32)
    return jax.device_put(members, self._pop)

  def meta_steps(self, members) -> np.ndarray | None:
    """[P] each member's meta-step multiplier, or None when ``meta_step_scale`` is 1."""
    if not self.tunes_meta_step:
      return None
    return np.exp(np.asarray(jax.device_get(members["log_meta_step"]), np.float64))

  RESTORED = ("theta", "outer_state")   # what ``keep_improved`` may send a member back to

  def restore_point(self, members) -> dict:
    """The parts of ``members`` that ``keep_improved`` can go back to, as host arrays."""
    return jax.device_get({k: members[k] for k in self.RESTORED})

  def keep_improved(self, start: dict, end, accepted: np.ndarray):
    """Members whose ``accepted`` is False go back to their ``start`` (``restore_point``) theta
    and meta-optimizer state; their inner runs go on from ``end`` and stay on the devices. The
    others keep ``end``. The selection is on the host, as above."""
    accepted = np.asarray(accepted, bool)
    pick = lambda s, e: np.where(accepted.reshape((-1,) + (1,) * (np.ndim(e) - 1)), e, s)
    out = dict(end)
    for k in self.RESTORED:
      out[k] = jax.device_put(jax.tree.map(pick, start[k], jax.device_get(end[k])), self._pop)
    return out

  def member_theta(self, members, index: int):
    """One member's meta-parameters as host numpy arrays."""
    return jax.tree.map(lambda x: np.asarray(x[index]), jax.device_get(members["theta"]))
