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
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == "__main__":
  main()
