"""The pure, sharded meta-training step: build from a config, init the state, one outer step.

    ms = MetaStep(config)             # tasks, rule, estimator, outer optimizer, mesh
    state = ms.init_state()           # sharded: members over the 'task' mesh axis
    state, metrics, grad = ms.step(state)

One outer step (a single ``jax.jit``) does, for every task type:

1. split the step key into one key per population member (independent of the device count, so
   1 and 8 devices compute the same thing);
2. inside ``jax.shard_map`` over the ``'task'`` mesh axis, ``vmap`` the estimator's ``grad`` over
   the local members (each advances its inner run(s) one truncation with ``lax.scan``), then
   restart finished runs under ``lax.cond`` when any local member needs it;
3. ``all_gather`` the masked per-member meta-gradients (theta-sized, so cheap) and sum them in
   population order, so the mean does not depend on how members are split over devices (up to
   float rounding of the reductions inside each member); ``psum`` the metrics;
4. apply the outer optax transformation; ``theta`` is kept unchanged if anything turned non-finite.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

import metalearn.artifacts as artifacts
import metalearn.parallel as parallel
from metalearn.meta import config as config_lib
from metalearn.meta import estimators as est_lib
from metalearn.meta.unroll import Problem, UnrollConfig
from metalearn.optimizers import make_rule
from metalearn.tasks import TaskSpec, make_family, make_task


def task_specs_from_config(config) -> list[TaskSpec]:
  """The config's task types: its ``task_specs``, else ``num_task_types`` sampled from families."""
  if config.task_specs:
    return [TaskSpec.from_dict(dict(s)) for s in config.task_specs]
  kwargs = config_lib.plain(config.get("family_kwargs", {}) or {})
  families = [make_family(name, **{k: tuple(v) if isinstance(v, list) else v
                                   for k, v in kwargs.get(name, {}).items()})
              for name in config.task_families]
  keys = jax.random.split(jax.random.key(config.task_seed), config.num_task_types)
  return [families[i % len(families)].sample(k) for i, k in enumerate(keys)]


def freeze_all_but(train_only) -> optax.GradientTransformation:
  """Zeroes the meta-gradient of every top-level meta-parameter not named in ``train_only``
  (identity if it is empty): a second training phase of part of a rule (say, its controller) with
  the rest frozen."""
  if not train_only:
    return optax.identity()
  keep = set(train_only)
  return optax.masked(optax.set_to_zero(), lambda theta: {k: k not in keep for k in theta})


def check_train_only(config, rule) -> None:
  names = set(jax.eval_shape(rule.init_meta_params, jax.random.key(0)))
  unknown = sorted(set(config.train_only) - names)
  if unknown:
    raise ValueError(f"invalid config: train_only names {unknown}, which {type(rule).__name__} "
                     f"{rule.config()} does not have; its meta-parameters are {sorted(names)}.")


def make_outer_optimizer(config) -> optax.GradientTransformation:
  """Adam (default) or SGD with global-norm clipping, or a learned rule training its successor;
  meta-parameters outside ``config.train_only`` (if set) get zero meta-gradients first."""
  name = config.outer_optimizer
  clip = optax.clip_by_global_norm(config.outer_grad_clip) if config.outer_grad_clip > 0 else (
      optax.identity())
  clip = optax.chain(freeze_all_but(tuple(config.get("train_only", ()))), clip)
  if name == "adam":
    return optax.chain(clip, optax.adam(config.outer_lr))
  if name == "sgd":
    return optax.chain(clip, optax.sgd(config.outer_lr, momentum=0.9))
  try:
    rule, theta, _ = artifacts.resolve(name)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f"invalid config: outer_optimizer {name!r}: use adam, sgd or a learned rule "
                     f"({artifacts.FORMS}). {e}") from e
  return optax.chain(clip, rule.as_optax(theta, num_steps=config.num_outer_steps))


def load_init_theta(config, rule):
  """The meta-parameters named by ``config.init_theta``, checked against ``rule``."""
  try:
    src_rule, theta, _ = artifacts.resolve(config.init_theta)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f"init_theta={config.init_theta!r}: {e}") from e
  theta = rule.warm_start(src_rule, theta)
  if theta is None:
    raise ValueError(
        f"init_theta={config.init_theta!r} holds meta-parameters of {type(src_rule).__name__} "
        f"{src_rule.config()}, but this run meta-trains {type(rule).__name__} {rule.config()}. "
        f"Set rule/rule_kwargs to match it, or pass another init_theta ({artifacts.FORMS}).")
  rule.check_meta_params(theta)
  return jax.tree.map(np.asarray, theta)


def unroll_config(config) -> UnrollConfig:
  return UnrollConfig(truncation_length=config.truncation_length,
                      min_horizon=config.min_horizon, max_horizon=config.max_horizon,
                      divergence_factor=config.divergence_factor, meta_loss=config.meta_loss,
                      remat=config.remat, weight_scale=tuple(config.weight_scale),
                      grouped=bool(config.get("grouped_update", False)))


class MetaStep:
  """Everything one outer step needs, built from a validated config (see module docstring)."""

  def __init__(self, config, *, mesh=None):
    self.config = config
    self.mesh = mesh or parallel.make_mesh(config.num_devices or None)
    self.num_devices = self.mesh.devices.size
    config_lib.validate(config, self.num_devices)
    self.rule = make_rule(config.rule, **config_lib.plain(config.rule_kwargs))
    check_train_only(config, self.rule)
    self._init_theta = load_init_theta(config, self.rule) if config.init_theta else None
    self.specs = task_specs_from_config(config)
    self.tasks = [make_task(s, data_dir=config.data_dir or None) for s in self.specs]
    self.estimator = est_lib.make_estimator(config.estimator, sigma=config.es_sigma,
                                            sign=config.es_sign)
    self.ucfg = unroll_config(config)
    self.outer_tx = make_outer_optimizer(config)
    self.datas = [parallel.put_replicated(t.data, self.mesh) for t in self.tasks]
    self.inner_steps_per_outer = (len(self.tasks) * config.population_per_task
                                  * config.truncation_length * self.estimator.runs_per_member)
    self._step_fn = None

  def problems(self, datas) -> list[Problem]:
    return [Problem(t, self.rule, self.ucfg, d) for t, d in zip(self.tasks, datas)]

  # -- state -------------------------------------------------------------------------------------
  def _init_state(self, key, datas):
    k_theta, k_pop, k_run = jax.random.split(key, 3)
    theta = self.rule.init_meta_params(k_theta)
    if self._init_theta is not None:  # warm start (config.init_theta), checked in __init__
      theta = jax.tree.map(lambda t, x: jnp.asarray(x, t.dtype), theta, self._init_theta)
    members = []
    for i, problem in enumerate(self.problems(datas)):
      keys = jax.random.split(jax.random.fold_in(k_pop, i), self.config.population_per_task)
      members.append(jax.vmap(lambda k, p=problem: self.estimator.init(p, theta, k))(keys))
    return {"step": jnp.zeros((), jnp.int32), "key": k_run, "theta": theta,
            "outer_state": self.outer_tx.init(theta), "members": members}

  def _shardings(self, abstract_state):
    pop, rep = parallel.population_sharding(self.mesh), parallel.replicated(self.mesh)
    return {k: jax.tree.map(lambda _: pop if k == "members" else rep, v)
            for k, v in abstract_state.items()}

  def abstract_state(self):
    """Shapes, dtypes and shardings of the state (what a checkpoint restores into)."""
    abstract = jax.eval_shape(self._init_state, jax.random.key(self.config.seed), self.datas)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, self._shardings(abstract))

  def init_state(self):
    key = jax.random.key(self.config.seed)
    abstract = jax.eval_shape(self._init_state, key, self.datas)
    return jax.jit(self._init_state, out_shardings=self._shardings(abstract))(key, self.datas)

  # -- the outer step ----------------------------------------------------------------------------
  def _local(self, theta, members, datas, keys):
    """Per device: the local members' summed gradients, metrics and new states."""
    est = self.estimator
    grads, weights, new_members, per_task = [], [], [], []
    sums = {"meta_loss": jnp.zeros(()), "loss": jnp.zeros(()), "diverged": jnp.zeros(())}
    for problem, m, k in zip(self.problems(datas), members, keys):
      g, w, m, metrics = jax.vmap(lambda mm, kk, p=problem: est.grad(p, theta, mm, kk))(m, k)
      # Restart finished runs only when some member on this device needs it: most truncations
      # end no run, and skipping the (vmapped, hence unconditional) re-init saves its cost.
      reset = jax.vmap(lambda mm, kk, p=problem: est.reset(p, theta, mm, kk))
      m = jax.lax.cond(jnp.any(jax.vmap(est.needs_reset)(m)), reset, lambda mm, kk: mm, m, k)
      grads.append(g)
      weights.append(w)
      for name in sums:
        sums[name] = sums[name] + jnp.sum(metrics[name].astype(jnp.float32))
      per_task.append(jnp.sum(metrics["meta_loss"]))
      new_members.append(m)
    # Gather every member's (small, theta-sized) gradient and sum in population order.
    grads, weights = jax.lax.all_gather((grads, weights), parallel.AXIS, tiled=True)
    grad_sum = jax.tree.map(lambda *gs: sum(jnp.sum(g, 0) for g in gs), *grads)
    weight = sum(jnp.sum(w) for w in weights)
    sums, per_task = jax.lax.psum((sums, per_task), parallel.AXIS)
    return grad_sum, weight, sums, per_task, new_members

  def _outer_step(self, state, datas):
    theta = state["theta"]
    key = jax.random.fold_in(state["key"], state["step"])
    pop = self.config.population_per_task
    keys = [jax.random.split(jax.random.fold_in(key, i), pop) for i in range(len(self.tasks))]
    grad_sum, weight, sums, per_task, members = jax.shard_map(
        self._local, mesh=self.mesh,
        in_specs=(P(), P(parallel.AXIS), P(), P(parallel.AXIS)),
        out_specs=(P(), P(), P(), P(), P(parallel.AXIS)),
        check_vma=False)(theta, state["members"], datas, keys)

    grad = jax.tree.map(lambda g: g / jnp.maximum(weight, 1.0), grad_sum)
    updates, outer_state = self.outer_tx.update(grad, state["outer_state"], theta)
    new_theta = optax.apply_updates(theta, updates)
    finite = est_lib._all_finite(new_theta)
    new_theta = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new_theta, theta)
    outer_state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), outer_state,
                               state["outer_state"])
    n = len(self.tasks) * pop
    metrics = {"meta_loss": sums["meta_loss"] / n, "inner_loss": sums["loss"] / n,
               "diverged_fraction": sums["diverged"] / n, "masked_fraction": 1 - weight / n,
               "meta_grad_norm": optax.tree.norm(grad), "theta_finite": finite}
    for i, l in enumerate(per_task):
      metrics[f"meta_loss/task{i}"] = l / pop
    new_state = {"step": state["step"] + 1, "key": state["key"], "theta": new_theta,
                 "outer_state": outer_state, "members": members}
    return new_state, metrics, grad

  def step(self, state):
    """One outer step: returns (new_state, metrics, meta_grad). Donates ``state``."""
    if self._step_fn is None:
      shardings = self._shardings(jax.eval_shape(self._init_state, jax.random.key(0), self.datas))
      rep = parallel.replicated(self.mesh)
      self._step_fn = jax.jit(self._outer_step, out_shardings=(shardings, rep, rep),
                              donate_argnums=(0,))
    return self._step_fn(state, self.datas)
