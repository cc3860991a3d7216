"""The meta-trainer: one jitted outer step over a sharded task population, checkpoints and logs.

    trainer = MetaTrainer(config, workdir)
    theta = trainer.train()            # resumes from workdir's latest checkpoint if there is one

One outer step (a single ``jax.jit``) does, for every task type:

1. split the step key into one key per population member (independent of the device count, so
   1 and 8 devices compute the same thing);
2. inside ``jax.shard_map`` over the ``'task'`` mesh axis, ``vmap`` the estimator's
   ``member_grad`` over the local members (each advances its inner run(s) one truncation with
   ``lax.scan``);
3. ``all_gather`` the masked per-member meta-gradients (theta-sized, so cheap) and sum them in
   population order, so the mean is bitwise the same for any device count; ``psum`` the metrics;
4. apply the outer optax transformation; keep ``theta`` unchanged if anything turned non-finite.
"""
from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from etils import epath

from metalearn import parallel
from metalearn.checkpoint import Checkpointer
from metalearn.meta import config as config_lib
from metalearn.meta import estimators as est_lib
from metalearn.meta.telemetry import write_text_atomic
from metalearn.meta.unroll import UnrollConfig
from metalearn.optimizers import make_rule
from metalearn.tasks import TaskSpec, make_family, make_task

CHECKPOINT_DIR = "checkpoints"
EXPORT_FILE = "theta.safetensors"


class IncompatibleCheckpointError(ValueError):
  pass


def task_specs_from_config(config) -> list[TaskSpec]:
  if config.task_specs:
    return [TaskSpec.from_dict(dict(s)) for s in config.task_specs]
  kwargs = config_lib._plain(config.get("family_kwargs", {}) or {})
  unknown = set(kwargs) - set(config.task_families)
  if unknown:
    raise ValueError(f"invalid config: family_kwargs for {sorted(unknown)}, which are not in "
                     f"task_families {list(config.task_families)}.")
  families = [make_family(name, **{k: tuple(v) if isinstance(v, list) else v
                                   for k, v in kwargs.get(name, {}).items()})
              for name in config.task_families]
  keys = jax.random.split(jax.random.key(config.task_seed), config.num_task_types)
  return [families[i % len(families)].sample(k) for i, k in enumerate(keys)]


def make_outer_optimizer(config) -> optax.GradientTransformation:
  """Adam (default) or SGD with global-norm clipping, or a learned rule training its successor."""
  name = config.outer_optimizer
  clip = optax.clip_by_global_norm(config.outer_grad_clip) if config.outer_grad_clip > 0 else (
      optax.identity())
  if name == "adam":
    return optax.chain(clip, optax.adam(config.outer_lr))
  if name == "sgd":
    return optax.chain(clip, optax.sgd(config.outer_lr, momentum=0.9))
  import metalearn
  if name.startswith("pretrained:"):
    tx = metalearn.pretrained(name.split(":", 1)[1], num_steps=config.num_outer_steps)
  elif epath.Path(name).is_dir():
    tx = metalearn.load_optimizer(name, num_steps=config.num_outer_steps)
  else:
    raise ValueError(f"invalid config: outer_optimizer {name!r}; use adam, sgd, "
                     "pretrained:NAME or the path of a meta-train workdir.")
  return optax.chain(clip, tx)


def _check_workdir(workdir: str) -> None:
  if "://" in workdir:
    return  # remote (gs://): orbax reports access problems itself
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise PermissionError(f"workdir {workdir} is not writable ({e.strerror}); choose a directory "
                          "you can write to with --workdir.") from e


class MetaTrainer:
  """Builds everything from a config, validates it, and runs the outer loop (see module doc)."""

  def __init__(self, config, workdir: str, *, mesh=None):
    self.config = config
    self.workdir = workdir
    self.mesh = mesh or parallel.make_mesh(config.num_devices or None)
    self.num_devices = self.mesh.devices.size
    config_lib.validate(config, self.num_devices)
    self.rule = make_rule(config.rule, **dict(config.rule_kwargs))
    self._init_theta = _load_init_theta(config, self.rule) if config.init_theta else None
    self.specs = task_specs_from_config(config)
    data_dir = config.data_dir or None
    self.tasks = [make_task(s, data_dir=data_dir) for s in self.specs]
    self.estimator = est_lib.make_estimator(config.estimator, sigma=config.es_sigma)
    self.ucfg = UnrollConfig(truncation_length=config.truncation_length,
                             min_horizon=config.min_horizon, max_horizon=config.max_horizon,
                             divergence_factor=config.divergence_factor,
                             meta_loss=config.meta_loss, remat=config.remat)
    self.outer_tx = make_outer_optimizer(config)
    self.datas = [parallel.put_replicated(t.data, self.mesh) for t in self.tasks]
    self.inner_steps_per_outer = (len(self.tasks) * config.population_per_task
                                  * config.truncation_length
                                  * est_lib.inner_runs_per_member(config.estimator))
    self._step_fn = None
    self.preempted = False

  # -- state -------------------------------------------------------------------------------------
  def _init_state(self, key):
    k_theta, k_pop, k_run = jax.random.split(key, 3)
    theta = self.rule.init_meta_params(k_theta)
    if self._init_theta is not None:  # warm start (config.init_theta), checked in __init__
      theta = jax.tree.map(lambda t, x: jnp.asarray(x, t.dtype), theta, self._init_theta)
    members = []
    for i, (task, data) in enumerate(zip(self.tasks, self.datas)):
      keys = jax.random.split(jax.random.fold_in(k_pop, i), self.config.population_per_task)
      init = lambda k, task=task, data=data: self.estimator.init_member(
          task, self.rule, theta, data, k, self.ucfg)
      members.append(jax.vmap(init)(keys))
    return {"step": jnp.zeros((), jnp.int32), "key": k_run, "theta": theta,
            "outer_state": self.outer_tx.init(theta), "members": members}

  def _shardings(self, abstract_state):
    pop, rep = parallel.population_sharding(self.mesh), parallel.replicated(self.mesh)
    return {k: (jax.tree.map(lambda _: pop, v) if k == "members" else jax.tree.map(lambda _: rep, v))
            for k, v in abstract_state.items()}

  def init_state(self):
    key = jax.random.key(self.config.seed)
    abstract = jax.eval_shape(self._init_state, key)
    return jax.jit(self._init_state, out_shardings=self._shardings(abstract))(key)

  def abstract_state(self):
    abstract = jax.eval_shape(self._init_state, jax.random.key(self.config.seed))
    shardings = self._shardings(abstract)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)

  # -- the outer step ----------------------------------------------------------------------------
  def _outer_step(self, state, datas):
    theta = state["theta"]
    key = jax.random.fold_in(state["key"], state["step"])
    pop = self.config.population_per_task
    member_keys = [jax.random.split(jax.random.fold_in(key, i), pop) for i in range(len(self.tasks))]

    def local(theta, members, datas, keys):
      grads, weights, new_members = [], [], []
      sums = {"meta_loss": jnp.zeros(()), "loss": jnp.zeros(()), "diverged": jnp.zeros(())}
      per_task_loss = []
      for task, m, data, k in zip(self.tasks, members, datas, keys):
        fn = lambda mm, kk, task=task, data=data: self.estimator.member_grad(
            task, self.rule, theta, mm, data, kk, self.ucfg, reset=False)
        g, w, m, metrics = jax.vmap(fn)(m, k)
        # Restart finished runs only when some member on this device needs it: most truncations
        # end no run, and skipping the (vmapped, hence unconditional) re-init saves its cost.
        reset = lambda mm, kk, task=task, data=data: self.estimator.reset(
            task, self.rule, theta, mm, data, kk, self.ucfg)
        m = jax.lax.cond(jnp.any(jax.vmap(self.estimator.needs_reset)(m)),
                         lambda mm, kk: jax.vmap(reset)(mm, kk), lambda mm, kk: mm, m, k)
        grads.append(g)
        weights.append(w)
        for name in sums:
          sums[name] = sums[name] + jnp.sum(metrics[name].astype(jnp.float32))
        per_task_loss.append(jnp.sum(metrics["meta_loss"]))
        new_members.append(m)
      # Gather every member's (small, theta-sized) gradient and sum in population order: the
      # result is the same on 1 device or 512, not merely close.
      grads, weights = jax.lax.all_gather((grads, weights), parallel.AXIS, tiled=True)
      grad_sum = jax.tree.map(lambda *gs: sum(jnp.sum(g, 0) for g in gs), *grads)
      weight = sum(jnp.sum(w) for w in weights)
      sums, per_task_loss = jax.lax.psum((sums, per_task_loss), parallel.AXIS)
      return grad_sum, weight, sums, per_task_loss, new_members

    grad_sum, weight, sums, per_task_loss, members = jax.shard_map(
        local, mesh=self.mesh,
        in_specs=(P(), P(parallel.AXIS), P(), P(parallel.AXIS)),
        out_specs=(P(), P(), P(), P(), P(parallel.AXIS)),
        check_vma=False)(theta, state["members"], datas, member_keys)

    grad = jax.tree.map(lambda g: g / jnp.maximum(weight, 1.0), grad_sum)
    updates, outer_state = self.outer_tx.update(grad, state["outer_state"], theta)
    new_theta = optax.apply_updates(theta, updates)
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(new_theta)]))
    new_theta = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new_theta, theta)
    outer_state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), outer_state,
                               state["outer_state"])
    n = len(self.tasks) * pop
    metrics = {"meta_loss": sums["meta_loss"] / n, "inner_loss": sums["loss"] / n,
               "diverged_fraction": sums["diverged"] / n, "masked_fraction": 1 - weight / n,
               "meta_grad_norm": optax.tree.norm(grad), "theta_finite": finite}
    for i, l in enumerate(per_task_loss):
      metrics[f"meta_loss/task{i}"] = l / pop
    new_state = {"step": state["step"] + 1, "key": state["key"], "theta": new_theta,
                 "outer_state": outer_state, "members": members}
    return new_state, metrics, grad

  def step_fn(self):
    if self._step_fn is None:
      shardings = self._shardings(jax.eval_shape(self._init_state, jax.random.key(0)))
      rep = parallel.replicated(self.mesh)
      self._step_fn = jax.jit(self._outer_step, out_shardings=(shardings, rep, rep),
                              donate_argnums=(0,))
    return self._step_fn

  def step(self, state):
    """One outer step: returns (new_state, metrics, meta_grad). Donates ``state``."""
    return self.step_fn()(state, self.datas)

  # -- evaluation --------------------------------------------------------------------------------
  def evaluate(self, theta, *, seeds: int = 2) -> dict:
    """Trains each eval task from scratch with the rule and with Adam(1e-3); final test losses."""
    from metalearn.evaluate.train import train_curves
    specs = ([TaskSpec.from_dict(dict(s)) for s in self.config.eval_tasks]
             or self.specs)
    out = {}
    for spec in specs:
      task = make_task(spec, data_dir=self.config.data_dir or None)
      h = self.config.eval_horizon
      rule_tx = self.rule.as_optax(jax.device_get(theta), num_steps=h)
      adam_tx = optax.adam(1e-3)
      r = train_curves(task, rule_tx, h, seeds)["final_test_loss"]
      a = train_curves(task, adam_tx, h, seeds)["final_test_loss"]
      out[spec.name] = {"rule": float(np.mean(r)), "adam_1e-3": float(np.mean(a))}
    return out

  # -- the loop ----------------------------------------------------------------------------------
  def train(self):
    """Runs (or resumes) meta-training to ``num_outer_steps``; returns the final theta."""
    from metalearn.meta.telemetry import Telemetry
    _check_workdir(self.workdir)
    cfg_json = config_lib.to_json(self.config)
    ckpt = Checkpointer(str(epath.Path(self.workdir) / CHECKPOINT_DIR),
                        keep=self.config.keep_checkpoints)
    try:
      start = ckpt.latest_step()
      if start is not None:
        stored = ckpt.config(start)
        bad = config_lib.incompatible_keys(stored, cfg_json)
        if bad:
          raise IncompatibleCheckpointError(
              f"workdir {self.workdir} holds a checkpoint (step {start}) of a different config: "
              f"{', '.join(f'{k}: {stored.get(k)!r} there vs {cfg_json.get(k)!r} now' for k in bad)}. "
              "Use a new --workdir, or the same config to resume. The checkpoint was left "
              "untouched.")
        state = ckpt.restore(self.abstract_state(), start)
      else:
        start = 0
        state = self.init_state()
      if parallel.is_main_process():
        write_text_atomic(epath.Path(self.workdir) / "config.json", json.dumps(cfg_json, indent=2))
      total = self.config.num_outer_steps
      telemetry = Telemetry(self.workdir, start_step=start, total_steps=total,
                            enabled=parallel.is_main_process(), progress=self.config.progress)
      ckpt.install_signal_handlers()
      step = start
      t_last, steps_since = time.perf_counter(), 0
      while step < total:
        t0 = time.perf_counter()
        state, metrics, _ = self.step(state)
        step += 1
        steps_since += 1
        if step % self.config.log_every == 0 or step == total or step == start + 1:
          metrics = jax.device_get(metrics)
          now = time.perf_counter()
          metrics["inner_steps_per_s"] = self.inner_steps_per_outer * steps_since / (now - t_last)
          if step == start + 1:
            metrics["first_step_seconds"] = now - t0
          t_last, steps_since = now, 0
          telemetry.log(step, metrics)
        else:
          telemetry.advance(step)
        if self.config.eval_every and step % self.config.eval_every == 0 and step < total:
          telemetry.log(step, {f"eval/{k}/{m}": v for k, r in self.evaluate(state["theta"]).items()
                               for m, v in r.items()})
        if step % self.config.checkpoint_every == 0 or step == total:
          ckpt.save(step, state, cfg_json, force=True)
        if ckpt.should_stop(step) and step < total:
          ckpt.save(step, state, cfg_json, force=True)
          ckpt.wait()
          telemetry.close()
          print(f"preempted: saved step {step}; run the same command to resume.")
          self.preempted = True
          return state["theta"]
      ckpt.wait()
      theta = jax.device_get(state["theta"])
      if parallel.is_main_process():
        self.export(theta, step)
        final = self.evaluate(theta)
        telemetry.log(step, {f"eval/{k}/{m}": v for k, r in final.items() for m, v in r.items()})
        write_text_atomic(epath.Path(self.workdir) / "eval.json", json.dumps(final, indent=2))
      telemetry.close()
      return theta
    finally:
      ckpt.close()

  def export(self, theta, step: int) -> str:
    """Writes the meta-parameters as safetensors beside the checkpoints (what load_optimizer reads)."""
    from metalearn.optimizers.serialization import save_rule
    path = str(epath.Path(self.workdir) / EXPORT_FILE)
    save_rule(path, self.rule, theta, outer_step=int(step),
              train_horizon=[self.config.min_horizon, self.config.max_horizon],
              task_specs=[s.to_dict() for s in self.specs], estimator=self.config.estimator)
    return path


def _load_init_theta(config, rule):
  """The meta-parameters named by ``config.init_theta``, checked against ``rule``."""
  from metalearn.evaluate.runner import OPTIMIZER_FORMS, load_rule
  try:
    src_rule, theta, _ = load_rule(config.init_theta)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f"init_theta={config.init_theta!r}: {e}") from e
  if type(src_rule) is not type(rule) or src_rule.config() != rule.config():
    raise ValueError(
        f"init_theta={config.init_theta!r} holds meta-parameters of {type(src_rule).__name__} "
        f"{src_rule.config()}, but this run meta-trains {type(rule).__name__} {rule.config()}. "
        f"Set rule/rule_kwargs to match it, or pass another init_theta ({OPTIMIZER_FORMS}).")
  rule.check_meta_params(theta)
  return jax.tree.map(np.asarray, theta)


def load_meta_params(workdir: str):
  """``(rule, theta, info)`` from a meta-train workdir: the latest checkpoint, else the export."""
  from metalearn.optimizers.serialization import load_rule
  if not epath.Path(workdir).is_dir():
    raise FileNotFoundError(f"{workdir} is not a directory; pass a meta-train workdir or a "
                            f"{EXPORT_FILE} file.")
  ckpt_dir = str(epath.Path(workdir) / CHECKPOINT_DIR)
  if epath.Path(ckpt_dir).is_dir():
    ckpt = Checkpointer(ckpt_dir, async_save=False)
    try:
      step = ckpt.latest_step()
      if step is not None:
        config = config_lib.default_config()
        config_lib.override(config, ckpt.config(step), source=f"{ckpt_dir} config")
        rule = make_rule(config.rule, **dict(config.rule_kwargs))
        arrays = ckpt.restore_arrays(step)
        # theta's leaves follow step and key in the state's flattening order (dict keys sorted:
        # key, members, outer_state, step, theta): read theta by matching its template at the end.
        template = jax.eval_shape(rule.init_meta_params, jax.random.key(0))
        n = len(jax.tree.leaves(template))
        leaves = [arrays[k] for k in sorted(arrays)][-n:]
        theta = jax.tree.unflatten(jax.tree.structure(template), [jnp.asarray(x) for x in leaves])
        rule.check_meta_params(theta)
        return rule, theta, {"outer_step": step, "source": ckpt_dir}
    finally:
      ckpt.close()
  export = str(epath.Path(workdir) / EXPORT_FILE)
  if epath.Path(export).exists():
    rule, theta, info = load_rule(export)
    return rule, theta, {**info, "source": export}
  raise FileNotFoundError(f"{workdir} holds no checkpoint and no {EXPORT_FILE}; run "
                          f"`metalearn meta-train --workdir {workdir}` first.")
