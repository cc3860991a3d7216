"""The meta-training loop: ``train_and_evaluate(config, workdir)``, resumable and interruptible.

    result = train_and_evaluate(config, "runs/my_run")   # resumes from the newest checkpoint

It builds a ``MetaStep``, restores or initialises the state, runs outer steps to
``num_outer_steps`` with logs (JSONL, TensorBoard, a progress bar), checkpoints every
``checkpoint_every`` steps, and at the end exports ``theta.safetensors`` and runs the evaluation
callback (by default ``quick_eval``: the rule against Adam(1e-3) on the eval tasks, written to
``eval.json``). SIGTERM and Ctrl-C stop it after the current outer step with a checkpoint of that
step; the same command resumes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable

import jax
import numpy as np
import optax
from etils import epath

import metalearn.artifacts as artifacts
import metalearn.parallel as parallel
from metalearn.checkpoint import Checkpointer
from metalearn.meta import config as config_lib
from metalearn.meta.step import MetaStep
from metalearn.files import atomic_write
from metalearn.meta.telemetry import Telemetry
from metalearn.tasks import TaskSpec, make_task
from metalearn.tasks.training import train_curves


class IncompatibleCheckpointError(ValueError):
  pass


@dataclasses.dataclass
class Result:
  theta: object
  step: int
  preempted: bool = False      # stopped by SIGTERM / Ctrl-C before num_outer_steps
  signal: str | None = None
  metrics: dict = dataclasses.field(default_factory=dict)   # the last logged metrics


def quick_eval(ms: MetaStep, theta, *, seeds: int = 2) -> dict:
  """Trains each eval task from scratch with the rule and with Adam(1e-3); final test losses."""
  config = ms.config
  specs = [TaskSpec.from_dict(dict(s)) for s in config.eval_tasks] or ms.specs
  out = {}
  for spec in specs:
    task = make_task(spec, data_dir=config.data_dir or None)
    h = config.eval_horizon
    r = train_curves(task, ms.rule.as_optax(jax.device_get(theta), num_steps=h), h, seeds)
    a = train_curves(task, optax.adam(1e-3), h, seeds)
    out[spec.name] = {"rule": float(np.mean(r["final_test_loss"])),
                      "adam_1e-3": float(np.mean(a["final_test_loss"]))}
  return out


def check_workdir(workdir: str) -> None:
  if "://" in workdir:
    return  # remote (gs://): orbax reports access problems itself
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f"workdir {workdir} is a file; pass a directory with --workdir.")
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise PermissionError(f"workdir {workdir} is not writable ({e.strerror}); choose a directory "
                          "you can write to with --workdir.") from e


def _restore(ms: MetaStep, ckpt: Checkpointer, cfg_json: dict, workdir: str):
  """``(state, start_step)``: the newest readable checkpoint of this config, else a fresh state."""
  if ckpt.latest_step() is None:
    return ms.init_state(), 0
  stored, step = ckpt.newest_config()
  bad = config_lib.incompatible_keys(stored, cfg_json,
                                     config_lib.to_json(config_lib.default_config()))
  if bad:
    raise IncompatibleCheckpointError(
        f"workdir {workdir} holds a checkpoint (step {step}) of a different config: "
        f"{', '.join(f'{k}: {stored.get(k)!r} there vs {cfg_json.get(k)!r} now' for k in bad)}. "
        "Use a new --workdir, or the same config to resume. The checkpoint was left untouched.")
  return ckpt.restore(ms.abstract_state())


def train_and_evaluate(config, workdir: str, *, mesh=None,
                       evaluate: Callable[[MetaStep, object], dict] | None = quick_eval,
                       eval_callback: Callable[[int, dict], None] | None = None) -> Result:
  """Runs (or resumes) meta-training to ``num_outer_steps`` in ``workdir`` (see module doc).

  ``evaluate(meta_step, theta) -> {task: {name: value}}`` runs every ``eval_every`` steps and at
  the end (``None``: never); ``eval_callback(step, results)`` receives each result.
  """
  ms = MetaStep(config, mesh=mesh)   # validates the config before anything is written
  check_workdir(workdir)
  cfg_json = config_lib.to_json(config)
  root = epath.Path(workdir)
  ckpt = Checkpointer(str(root / artifacts.CHECKPOINT_DIR), keep=config.keep_checkpoints)
  telemetry = None
  try:
    state, start = _restore(ms, ckpt, cfg_json, workdir)
    total = config.num_outer_steps
    if start >= total:
      print(f"{workdir} is already at outer step {start} (num_outer_steps={total}); nothing to "
            f"train. Raise --config.num_outer_steps to continue.")
      return Result(jax.device_get(state["theta"]), start)
    main = parallel.is_main_process()
    if main:
      atomic_write(root / "config.json", json.dumps(cfg_json, indent=2))
    telemetry = Telemetry(workdir, start_step=start, total_steps=total, enabled=main,
                          progress=config.progress)
    ckpt.install_signal_handlers()
    step, t_last, since, last = start, time.perf_counter(), 0, {}

    def run_eval(theta):
      if evaluate is None:
        return None
      res = evaluate(ms, theta)
      telemetry.log(step, {f"eval/{k}/{m}": v for k, r in res.items() for m, v in r.items()})
      if eval_callback is not None:
        eval_callback(step, res)
      return res

    while step < total:
      t0 = time.perf_counter()
      state, metrics, _ = ms.step(state)
      step += 1
      since += 1
      if step % config.log_every == 0 or step == total or step == start + 1:
        metrics = jax.device_get(metrics)
        now = time.perf_counter()
        metrics["inner_steps_per_s"] = ms.inner_steps_per_outer * since / (now - t_last)
        if step == start + 1:
          metrics["first_step_seconds"] = now - t0
        t_last, since = now, 0
        telemetry.log(step, metrics)
        last = metrics
      else:
        telemetry.advance(step)
      if config.eval_every and step % config.eval_every == 0 and step < total:
        run_eval(state["theta"])
      stop = ckpt.should_stop(step) and step < total
      if step % config.checkpoint_every == 0 or step == total or stop:
        ckpt.save(step, state, cfg_json)
      if stop:
        ckpt.wait()
        return Result(jax.device_get(state["theta"]), step, True, ckpt.stop_signal, last)
    ckpt.wait()
    theta = jax.device_get(state["theta"])
    if main:
      export(ms, theta, step, workdir)
      final = run_eval(theta)
      if final is not None:
        atomic_write(root / "eval.json", json.dumps(final, indent=2))
    return Result(theta, step, metrics=last)
  finally:
    if telemetry is not None:
      telemetry.close()
    ckpt.close()


def export(ms: MetaStep, theta, step: int, workdir: str) -> str:
  """Writes the meta-parameters as safetensors beside the checkpoints (what load_optimizer reads)."""
  path = str(epath.Path(workdir) / artifacts.EXPORT_FILE)
  c = ms.config
  artifacts.save(path, ms.rule, theta, outer_step=int(step),
                 train_horizon=[c.min_horizon, c.max_horizon],
                 task_specs=[s.to_dict() for s in ms.specs], estimator=c.estimator)
  return path
