"""The whole performance harness in one command: `tx.update` alone and the full train step per
rule vs AdamW (MLP, CNN, transformer; plus a 4096x4096 matrix for the update), optimizer-state
floats per parameter, meta-training efficiency and the compile time of one outer step. Prints
tables, then issue #17's CPU targets as met / MISSED, and writes one JSON.

    python benchmarks/run_all.py [--json benchmarks/results_cpu.json] [--rounds 15]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import meta_efficiency  # noqa: E402
import step_cost  # noqa: E402
import update_cost  # noqa: E402

# Issue #17's CPU targets: the update alone per rule (every parameter set), the full step (every
# model, every rule), and meta-training efficiency.
UPDATE_TARGETS = {"mlp_lopt": 1.15, "default": 1.15, "hyperparam_net": 1.05}
STEP_TARGET = 1.1
EFFICIENCY_TARGET = 0.85


def target_rows(results) -> list[dict]:
  """Each target with its measured value (the worst over sets or models) and whether it was met."""
  rows = []
  sets = results["update_cost"]["sets"]
  for rule, bound in UPDATE_TARGETS.items():
    values = [s["rules"][rule]["ratio_vs_adamw"] for s in sets.values() if rule in s["rules"]]
    if values:
      rows.append({"target": f"{rule} update / AdamW (worst set)", "value": max(values),
                   "bound": f"<= {bound}", "met": max(values) <= bound})
  for name, model in results["step_cost"]["models"].items():
    worst = max(v["ratio_vs_adamw"] for r, v in model.items()
                if r != "adamw" and isinstance(v, dict) and "ratio_vs_adamw" in v)
    rows.append({"target": f"step / AdamW, worst rule, {name}", "value": worst,
                 "bound": f"<= {STEP_TARGET}", "met": worst <= STEP_TARGET})
  eff = results["meta_efficiency"]["efficiency"]
  rows.append({"target": "meta-training efficiency", "value": eff,
               "bound": f">= {EFFICIENCY_TARGET}", "met": eff >= EFFICIENCY_TARGET})
  return rows


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--json", default=None)
  p.add_argument("--rounds", type=int, default=15)
  args = p.parse_args(argv)
  results = {"update_cost": update_cost.main(["--rounds", str(args.rounds), "--sets",
                                              "mlp,cnn,transformer,matrix"]),
             "step_cost": step_cost.main(["--rounds", str(args.rounds)]),
             "meta_efficiency": meta_efficiency.main(["--rounds", "9", "--steps", "5"])}
  eff = results["meta_efficiency"]
  print(f"\nmeta-training efficiency (PES, default config): {eff['efficiency']:.2f} "
        f"({eff['meta_train_inner_steps_per_s']:.0f} vs {eff['plain_adam_inner_steps_per_s']:.0f} "
        f"inner steps/s); outer-step compile {eff['outer_step_compile_s']:.1f} s")
  results["targets"] = target_rows(results)
  print("\nissue #17's CPU targets (one noisy run; see docs/performance.md):")
  for r in results["targets"]:
    print(f"  {r['target']:<52}{r['value']:>7.2f}  {r['bound']:<8}{'met' if r['met'] else 'MISSED'}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == "__main__":
  main()
