"""Ships a selected checkpoint as a pretrained rule, with its recipe, command, compute and
meta-training distribution in the file's metadata (what `ml.pretrained_rule(NAME)[2]` returns and
what the evaluation reads to say which suite tasks were inside meta-training).

    python experiments/ship_rule.py SELECTED.safetensors NAME --config experiments/RECIPE.py \\
        --command "..." --compute "..." [--keep_previous_as NAME_vN]

``--keep_previous_as`` first copies the currently shipped NAME to that name, so users of the old
rule can still load it. ``--rule_kwarg KEY=JSON`` (repeatable) ships an ablated variant: the
recipe's rule with that constructor argument changed, keeping only the meta-parameters the changed
rule has (e.g. ``--rule_kwarg adaptive=false`` drops ``adapt_rate`` and ``adapt_bias``); the
metadata records the change and the dropped meta-parameters.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

import jax
import numpy as np

from metalearn.meta import config as config_lib
from metalearn.optimizers import make_rule
from metalearn.optimizers.serialization import load_rule, save_rule

PRETRAINED = os.path.join(os.path.dirname(__file__), "..", "metalearn", "optimizers", "pretrained")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("selected")
  p.add_argument("name")
  p.add_argument("--config", required=True)
  p.add_argument("--command", required=True)
  p.add_argument("--compute", required=True)
  p.add_argument("--keep_previous_as", default=None)
  p.add_argument("--rule_kwarg", action="append", default=[],
                 help="KEY=JSON: ship the recipe's rule with this constructor argument changed")
  p.add_argument("--validation", default=None,
                 help="select_checkpoint's *_validation.json: records the shipped step's score")
  args = p.parse_args()
  config = config_lib.load_config(args.config)
  rule = make_rule(config.rule, **dict(config.rule_kwargs))
  src_rule, theta, meta = load_rule(args.selected)
  if src_rule.config() != rule.config():
    raise SystemExit(f"{args.selected} holds {src_rule.config()}, the recipe builds {rule.config()}")
  theta = {k: np.asarray(v) for k, v in theta.items()}
  ablation = {}
  if args.rule_kwarg:
    changes = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.rule_kwarg)}
    rule = make_rule(config.rule, **{**dict(config.rule_kwargs), **changes})
    names = set(rule.init_meta_params(jax.random.key(0)))
    missing = sorted(names - set(theta))
    if missing:
      raise SystemExit(f"--rule_kwarg {changes} needs meta-parameters {missing} the checkpoint lacks")
    ablation = {"rule_kwargs_changed": changes, "dropped_meta_params": sorted(set(theta) - names),
                "validation_score_is_of": "the checkpoint as meta-trained, before rule_kwargs_changed"}
    theta = {k: v for k, v in theta.items() if k in names}
  target = os.path.join(PRETRAINED, f"{args.name}.safetensors")
  if args.keep_previous_as:
    keep = os.path.join(PRETRAINED, f"{args.keep_previous_as}.safetensors")
    if os.path.exists(keep):
      raise SystemExit(f"{keep} exists already; pick another --keep_previous_as")
    shutil.copyfile(target, keep)
  extra = {k: meta[k] for k in ("outer_step", "validation_score", "validation_tasks") if k in meta}
  if args.validation:
    with open(args.validation) as f:
      val = json.load(f)
    step = str(extra["outer_step"])
    extra["validation_score"] = val["scores"][step]
    extra["validation_tasks"] = [r["task"] for r in val["per_task"][step]]
    extra["validation_selection"] = {"gate": val.get("gate"), "eligible": val.get("eligible"),
                                     "best_by_gate": val.get("best")}
  save_rule(target, rule, theta, recipe=os.path.relpath(args.config), command=args.command,
            compute=args.compute, task_specs=[dict(d) for d in config.task_specs],
            meta_training_horizon=[int(config.min_horizon), int(config.max_horizon)],
            weight_scale=list(config.weight_scale), estimator=config.estimator,
            es_sign=bool(config.es_sign), **ablation, **extra)
  _, back, info = load_rule(target)
  for k in theta:
    assert np.asarray(back[k]).tobytes() == theta[k].tobytes(), k
  print("shipped", args.name, json.dumps({k: v for k, v in info.items() if k != "task_specs"},
                                         default=str)[:600])


if __name__ == "__main__":
  main()
