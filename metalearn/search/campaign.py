"""Campaigns: meta-train (or take) a rule, search architectures with it, train the best, report.

    metalearn campaign --config experiments/campaign_mnist.py --workdir runs/campaign

Stages, each in its own folder of the workdir, each finished by an atomically written
``done.json`` (its result); a stage whose marker exists is skipped, and one that was interrupted
resumes on its own:

1. ``rule``: meta-train with ``meta_train`` (resumes from its orbax checkpoints), or take ``rule``
   (e.g. ``pretrained:default``).
2. ``search``: architecture search with the rule and no per-candidate tuning (``search/learned``),
   and, with ``compare_adam``, the same search with Adam and a learning-rate grid per candidate
   (``search/adam``). Every trained candidate is in ``candidates.json`` as it finishes; a rerun
   tells those to the strategy and trains only the rest.
3. ``final``: each side's best architecture trained longer with the rule and with AdamW tuned over
   ``final_lrs`` (chosen by validation accuracy; the test accuracy is reported). Runs are saved
   one by one in ``runs.json``.
4. ``report``: ``report/report.md`` with plots (``metalearn.search.nas_report``).

Each stage logs ``metrics.jsonl`` and TensorBoard events in its folder and shows a progress bar.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from metalearn.files import atomic_write, run_get_config
from metalearn.search import nas, nas_report
from metalearn.search.nas_space import make_space
from metalearn.search.nas_train import Trainer, train_and_score

STAGES = ("rule", "search", "final", "report")
DONE = "done.json"
DEFAULTS = {
    "name": "campaign",
    "rule": "pretrained:default",   # a rule source (metalearn.artifacts.resolve), or
    "meta_train": None,             # {"config": PATH or None (default), "overrides": {...}}
    "dataset": "mnist5k_14",
    "space": {"mlp": {}, "cnn": {}},  # {family: kwargs}, a list of ArchFamily, or an ArchSpace
    "strategy": "evolution",        # random | evolution | tpe
    "strategy_kwargs": {},
    "budget": 40,                   # candidates trained per side
    "num_steps": 300,               # inner steps per candidate run
    "batch_size": 64,
    "seeds": (0,),
    "adam_lrs": (1e-3, 3e-3, 1e-2, 3e-2),   # the Adam side's grid, per candidate
    "compare_adam": True,
    "final_steps": 1000,
    "final_lrs": (3e-4, 1e-3, 3e-3, 1e-2),  # AdamW's grid in the final training
    "final_seeds": (0, 1, 2),
    "validation_fraction": 0.2,
    "seed": 0,
    "stages": STAGES,
}


def load_config(path: str) -> dict:
  return check_config(run_get_config(path, "campaign config"))


def check_config(config) -> dict:
  """Every key and name checked before anything is written."""
  config = dict(config.to_dict() if hasattr(config, "to_dict") else config)
  unknown = set(config) - set(DEFAULTS)
  if unknown:
    raise ValueError(f"campaign config: unknown keys {sorted(unknown)}; valid: {sorted(DEFAULTS)}.")
  config = {**DEFAULTS, **config}
  stages = [config["stages"]] if isinstance(config["stages"], str) else list(config["stages"])
  bad = [s for s in stages if s not in STAGES]
  if bad or not stages:
    raise ValueError(f"campaign config: unknown stages {bad or stages}; choose from "
                     f"{', '.join(STAGES)}.")
  config["stages"] = tuple(s for s in STAGES if s in stages)
  if config["strategy"] not in nas.STRATEGIES:
    raise ValueError(f"campaign config: unknown search strategy {config['strategy']!r}; choose "
                     f"one of {', '.join(nas.STRATEGIES)}.")
  make_space(config["space"])   # an empty or invalid space fails here
  for key in ("budget", "num_steps", "batch_size", "final_steps"):
    if not isinstance(config[key], int) or isinstance(config[key], bool) or config[key] < 1:
      raise ValueError(f"campaign config: {key} must be an integer >= 1, got {config[key]!r}.")
  mt = config["meta_train"]
  if mt is not None and (not isinstance(mt, dict) or "config" not in mt
                         or set(mt) - {"config", "overrides"}):
    raise ValueError("campaign config: meta_train must be None or {'config': PATH, "
                     "'overrides': {...}}.")
  if mt is None and not (isinstance(config["rule"], str) and config["rule"]):
    raise ValueError("campaign config: set 'rule' (e.g. 'pretrained:default') or 'meta_train'.")
  return config


def _read(path: str):
  with open(path) as f:
    return json.load(f)


def _fingerprint(config: dict) -> dict:
  """The config as JSON (what defines the campaign's results; ``stages`` only picks what runs).
  The space is written as the list of its architectures (families may hold functions)."""
  plain = {k: v for k, v in config.items() if k != "stages"}
  plain["space"] = make_space(config["space"]).enumerate()
  return json.loads(json.dumps(plain, default=repr))


class Campaign:
  """Runs the stages of one campaign in ``workdir`` (module docstring)."""

  def __init__(self, config, workdir: str, *, progress: bool = True):
    self.config, self.workdir, self.progress = check_config(config), workdir, progress
    self.space = make_space(self.config["space"])

  def dir(self, *parts) -> str:
    path = os.path.join(self.workdir, *parts)
    os.makedirs(path, exist_ok=True)
    return path

  def done(self, stage: str):
    path = os.path.join(self.workdir, stage, DONE)
    return _read(path) if os.path.isfile(path) else None

  def _telemetry(self, folder: str, start: int, total: int, desc: str):
    from metalearn.meta.telemetry import Telemetry
    return Telemetry(folder, start_step=start, total_steps=total, progress=self.progress,
                     desc=desc)

  def run(self) -> dict:
    if os.path.exists(self.workdir) and not os.path.isdir(self.workdir):
      raise NotADirectoryError(f"workdir {self.workdir} is a file; pass a directory.")
    stored = os.path.join(self.workdir, "config.json")
    if os.path.isfile(stored) and _read(stored) != _fingerprint(self.config):
      raise ValueError(f"{self.workdir} holds a campaign with another config ({stored}); use a new "
                       "workdir, or restore the config to resume.")
    os.makedirs(self.workdir, exist_ok=True)
    atomic_write(stored, json.dumps(_fingerprint(self.config), indent=2))
    results = {}
    for stage in STAGES:
      result = self.done(stage)
      if result is not None:
        print(f"campaign: stage {stage} already done ({os.path.join(self.workdir, stage, DONE)}); "
              "skipped.")
      elif stage in self.config["stages"]:
        start = time.time()
        result = getattr(self, f"stage_{stage}")(results)
        result["seconds"] = round(time.time() - start, 1)
        atomic_write(os.path.join(self.dir(stage), DONE), json.dumps(result, indent=2))
      results[stage] = result
    return results

  def _needs(self, results: dict, stage: str) -> dict:
    if results.get(stage) is None:
      raise ValueError(f"campaign: stage {stage} is not done in {self.workdir}; run it first "
                       f"(add it to --stages).")
    return results[stage]

  # -- the stages ---------------------------------------------------------------------------------

  def stage_rule(self, results) -> dict:
    mt = self.config["meta_train"]
    if mt is None:
      import metalearn.artifacts as artifacts
      artifacts.resolve(self.config["rule"])   # fails now, not after the search began
      return {"source": self.config["rule"]}
    from metalearn.meta import config as config_lib
    from metalearn.meta.train import train_and_evaluate
    cfg = config_lib.load_config(mt["config"])
    config_lib.override(cfg, dict(mt.get("overrides") or {}), source="campaign meta_train")
    folder = self.dir("rule")
    out = train_and_evaluate(cfg, folder)
    if out.preempted:
      raise KeyboardInterrupt(f"meta-training preempted at outer step {out.step}; rerun to resume.")
    return {"source": os.path.abspath(folder), "outer_steps": int(out.step)}

  def _trainers(self, source: str) -> dict:
    c = self.config
    kw = dict(seeds=c["seeds"], validation_fraction=c["validation_fraction"])
    sides = {"learned": lambda: Trainer.learned(source, c["num_steps"], **kw)}
    if c["compare_adam"]:
      sides["adam"] = lambda: Trainer.adam(c["adam_lrs"], c["num_steps"], **kw)
    return sides

  def stage_search(self, results) -> dict:
    c = self.config
    source = self._needs(results, "rule")["source"]
    out = {}
    for side, make_trainer in self._trainers(source).items():
      folder = self.dir("search", side)
      done_path = os.path.join(folder, DONE)
      if os.path.isfile(done_path):
        out[side] = _read(done_path)
        continue
      state = os.path.join(folder, "candidates.json")
      history = _read(state) if os.path.isfile(state) else []
      total = min(c["budget"], self.space.size)
      log = self._telemetry(folder, len(history), total, f"search/{side}")

      def record(r, history=history, state=state, log=log):
        history.append(r)
        atomic_write(state, json.dumps(history))
        log.log(len(history), {k: r[k] for k in ("val_accuracy", "best_val_accuracy",
                                                 "cum_steps", "num_params", "seconds")})

      strategy = nas.make_strategy(c["strategy"], self.space, seed=c["seed"],
                                   **c["strategy_kwargs"])
      try:
        full = nas.search(self.space, strategy, make_trainer(), c["budget"], dataset=c["dataset"],
                          batch_size=c["batch_size"], history=list(history), on_result=record)
      finally:
        log.close()
      b = nas.best(full)
      out[side] = {"best": b, "candidates": len(full), "total_steps": full[-1]["cum_steps"]}
      atomic_write(done_path, json.dumps(out[side], indent=2))
    return {"sides": out}

  def stage_final(self, results) -> dict:
    c = self.config
    source = self._needs(results, "rule")["source"]
    sides = self._needs(results, "search")["sides"]
    import metalearn.artifacts as artifacts
    from metalearn.search.batched import optimizer_family
    from metalearn.tasks.base import make_task
    rule, theta, _ = artifacts.resolve(source)
    adamw = optimizer_family("adamw", c["final_steps"])
    optimizers = {"rule": (lambda lr: rule.as_optax(theta, num_steps=c["final_steps"]), [0.0]),
                  "adamw": (lambda lr: adamw({"learning_rate": lr}), list(c["final_lrs"]))}
    folder = self.dir("final")
    state = os.path.join(folder, "runs.json")
    runs = _read(state) if os.path.isfile(state) else {}
    todo = [(s, o) for s in sides for o in optimizers]
    log = self._telemetry(folder, len(runs), len(todo), "final")
    try:
      for side, opt in todo:
        key = f"{side}/{opt}"
        arch = sides[side]["best"]["arch"]
        same = [k for k, r in runs.items() if k.endswith("/" + opt) and r["arch"] == arch]
        if key in runs or same:   # both sides found the same architecture: train it once
          runs.setdefault(key, runs[same[0]] if same else None)
          continue
        task = make_task(self.space.to_spec(arch, c["dataset"], c["batch_size"]))
        make_tx, lrs = optimizers[opt]
        out = train_and_score(task, make_tx, c["final_steps"], lrs, c["final_seeds"],
                              validation_fraction=c["validation_fraction"])
        i = int(np.argmax(out["val_accuracy"].mean(1)))
        runs[key] = {"arch": arch, "learning_rate": lrs[i],
                     "val_accuracy": float(out["val_accuracy"][i].mean()),
                     "test_accuracy": float(out["test_accuracy"][i].mean()),
                     "test_accuracy_sd": float(out["test_accuracy"][i].std()),
                     "test_accuracy_per_seed": out["test_accuracy"][i].tolist(),
                     "steps": len(lrs) * len(c["final_seeds"]) * c["final_steps"]}
        atomic_write(state, json.dumps(runs, indent=2))
        log.log(len(runs), {"test_accuracy": runs[key]["test_accuracy"]})
    finally:
      log.close()
    return {"runs": runs}

  def stage_report(self, results) -> dict:
    sides = self._needs(results, "search")["sides"]
    histories = {s: _read(os.path.join(self.workdir, "search", s, "candidates.json"))
                 for s in sides}
    final = (results.get("final") or {}).get("runs")
    extra = []
    if final and "learned/adamw" in final and "adam/adamw" in final:
      gap = 100 * (final["adam/adamw"]["test_accuracy"] - final["learned/adamw"]["test_accuracy"])
      ratio = sides["adam"]["total_steps"] / sides["learned"]["total_steps"]
      extra = ["## Target", "",
               f"Retrained with tuned AdamW, the learned side's best architecture is {gap:.2f} "
               f"points below the Adam side's (target: within 0.5), found with {ratio:.2f}x fewer "
               "inner steps (target: >= 3x).", ""]
    path = nas_report.write_nas_report(histories, self.dir("report"), final=final,
                                       title=f"Campaign `{self.config['name']}`",
                                       extra="\n".join(extra))
    return {"report": path}


def run_campaign(config, workdir: str, *, stages=None, progress: bool = True) -> dict:
  """Runs (or resumes) a campaign; ``stages`` (names) restricts which stages may run."""
  config = dict(check_config(config))
  if stages is not None:
    config["stages"] = stages
  return Campaign(config, workdir, progress=progress).run()
