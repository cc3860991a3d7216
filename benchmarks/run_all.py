"""The whole performance harness in one command: step cost per rule vs AdamW (MLP, CNN,
transformer), optimizer-state floats per parameter, meta-training efficiency and the compile time
of one outer step. Prints tables and writes one JSON.

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


# The performance targets (issue: learned-rule steps near Adam's cost), checked on the MLP row.
TARGET_MODEL = "mlp_784-256-256-10_b128"
TARGETS = [("MLPLOpt step / AdamW", ("MLPLOpt", "ratio_vs_adamw"), "<=", 1.3),
           ("pretrained('default') step / AdamW", ("pretrained:default", "ratio_vs_adamw"), "<=", 1.3),
           ("HyperparamNet step / AdamW", ("HyperparamNet", "ratio_vs_adamw"), "<=", 1.05),
           ("MLPLOpt state floats / param", ("MLPLOpt", "state_floats_per_param"), "<=", 3.0),
           ("HyperparamNet state floats / param", ("HyperparamNet", "state_floats_per_param"), "<=", 3.0)]


def target_rows(results) -> list[dict]:
  """Each target with its measured value and whether this run met it."""
  rows = []
  models = results["step_cost"]["models"]
  for label, (rule, field), op, bound in TARGETS:
    value = models.get(TARGET_MODEL, {}).get(rule, {}).get(field)
    if value is not None:
      rows.append({"target": label, "value": value, "bound": f"{op} {bound}", "met": value <= bound})
  eff = results["meta_efficiency"]["efficiency"]
  rows.append({"target": "meta-training efficiency", "value": eff, "bound": ">= 0.7",
               "met": eff >= 0.7})
  return rows


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--json", default=None)
  p.add_argument("--rounds", type=int, default=15)
  args = p.parse_args(argv)
  results = {"step_cost": step_cost.main(["--rounds", str(args.rounds)]),
             "meta_efficiency": meta_efficiency.main(["--rounds", "9", "--steps", "5"])}
  eff = results["meta_efficiency"]
  print(f"\nmeta-training efficiency (PES, default config): {eff['efficiency']:.2f} "
        f"({eff['meta_train_inner_steps_per_s']:.0f} vs {eff['plain_adam_inner_steps_per_s']:.0f} "
        f"inner steps/s); outer-step compile {eff['outer_step_compile_s']:.1f} s")
  results["targets"] = target_rows(results)
  print(f"\ntargets ({TARGET_MODEL} for step cost; one noisy run, see docs/performance.md):")
  for r in results["targets"]:
    print(f"  {r['target']:<38}{r['value']:>7.2f}  {r['bound']:<8}{'met' if r['met'] else 'MISSED'}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == "__main__":
  main()
