"""The quickstart job: meta-train the default config, evaluate it (and the shipped rule), report.

    metalearn demo --workdir runs/demo

Each stage reuses what an earlier run of the same workdir finished: meta-training resumes from its
checkpoint, and evaluations share one cache of runs (so the baselines train once).
"""
from __future__ import annotations

import os


def _meta_train(workdir: str):
  from metalearn.meta import config as config_lib
  from metalearn.meta.train import train_and_evaluate
  result = train_and_evaluate(config_lib.default_config(), workdir)
  if result.preempted:
    raise KeyboardInterrupt  # stopped by a signal after saving: the same command resumes


def run_demo(workdir: str = "runs/demo") -> str:
  """Meta-trains the default config, evaluates it on the ``demo`` suite (and ``pretrained:default``
  when shipped) against tuned baselines, and writes ``workdir/report.md``; returns its path."""
  import metalearn.artifacts as artifacts
  from metalearn.evaluate.report import write_report
  from metalearn.evaluate.runner import run_evaluation
  meta_dir = os.path.join(workdir, "meta_train")
  cache = os.path.join(workdir, "run_cache")
  print(f"[1/3] meta-training the default config in {meta_dir}")
  _meta_train(meta_dir)
  print("[2/3] evaluating against tuned baselines (Adam, AdamW, AdamW + warmup-cosine, "
        "SGD+momentum) and untuned Adam 1e-3 on the demo suite")
  run_evaluation(meta_dir, "demo", os.path.join(workdir, "eval_meta_trained"), cache_dir=cache)
  if "default" in artifacts.pretrained_names():
    run_evaluation("pretrained:default", "demo", os.path.join(workdir, "eval_pretrained_default"),
                   cache_dir=cache)
  print("[3/3] writing the report")
  path = write_report(workdir)
  print(f"report: {path}")
  return path
