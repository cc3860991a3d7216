"""Measures the targets of docs/search.md: TPE vs a 7x4 grid, PBT-16 vs a 16-point grid.

    PYTHONPATH=. python experiments/search_measure.py runs/search_measure   # ~20-40 min on 2 CPUs

Writes OUT/measure.json. Every number in docs/search.md comes from it.
"""
import json
import os
import sys
import time

import numpy as np
import optax

from metalearn.search import PBT, run_search
from metalearn.search.batched import BatchRun, optimizer_family
from metalearn.tasks import TaskSpec, make_task
from metalearn.tasks.training import train_grid

sys.path.insert(0, os.path.dirname(__file__))
import search_adam_digits  # noqa: E402
import search_pbt_digits  # noqa: E402


def tpe_vs_grid(out, seeds=range(5)):
  base = search_adam_digits.get_config()
  t0 = time.perf_counter()
  grid = run_search({**base, "name": "grid", "sampler": "grid", "pruner": "none", "trials": 28,
                     "batch_size": 28}, os.path.join(out, "grid"), report=True)
  res = {"grid_best": grid["best_value"], "grid_best_params": grid["best_params"],
         "grid_trials": len(grid["trials"]), "grid_seconds": time.perf_counter() - t0, "tpe": []}
  for s in seeds:
    t0 = time.perf_counter()
    r = run_search({**base, "name": f"tpe{s}", "seed": s}, os.path.join(out, f"tpe{s}"),
                   report=(s == 0))
    res["tpe"].append({"seed": s, "best": r["best_value"], "params": r["best_params"],
                       "states": r["states"], "seconds": time.perf_counter() - t0,
                       "within_1pct": r["best_value"] <= 1.01 * grid["best_value"]})
    print(res["tpe"][-1], flush=True)
  return res


def pbt_vs_grid(out, seeds=range(5)):
  cfg = search_pbt_digits.get_config()
  task = make_task(TaskSpec.from_dict(dict(cfg["task"])))
  lrs = np.geomspace(1e-4, 1e-1, 16)
  res = []
  for s in seeds:
    t0 = time.perf_counter()
    grid = train_grid(task, lambda lr: optax.adamw(lr, weight_decay=1e-4), cfg["num_steps"],
                      lrs, [s])
    t_grid = time.perf_counter() - t0
    row = {"seed": s, "grid_best": float(np.nanmin(grid["test_loss"])),
           "grid_best_lr": float(lrs[int(np.nanargmin(grid["test_loss"][:, 0]))]),
           "grid_seconds": t_grid}
    for init in ("grid", "random"):
      pbt = PBT(task, "adamw", num_steps=cfg["num_steps"], num_intervals=8,
                bounds={"learning_rate": (1e-4, 1e-1)}, population=16, seed=s)
      t0 = time.perf_counter()
      o = pbt.run({"learning_rate": lrs} if init == "grid" else None)
      best = int(np.nanargmin(o["test_loss"]))
      row[f"pbt_{init}_best"] = float(o["test_loss"][best])
      row[f"pbt_{init}_seconds"] = time.perf_counter() - t0
      row[f"pbt_{init}_schedule"] = [float(o["hparams"]["learning_rate"][k, m])
                                    for k, m in enumerate(pbt.lineage(o, best))]
    print(row, flush=True)
    res.append(row)
  return res


if __name__ == "__main__":
  out = sys.argv[1] if len(sys.argv) > 1 else "runs/search_measure"
  os.makedirs(out, exist_ok=True)
  which = sys.argv[2] if len(sys.argv) > 2 else "both"
  results = {}
  path = os.path.join(out, "measure.json")
  if os.path.exists(path):
    results = json.load(open(path))
  if which in ("both", "tpe"):
    results["tpe_vs_grid"] = tpe_vs_grid(out)
    json.dump(results, open(path, "w"), indent=2)
  if which in ("both", "pbt"):
    results["pbt_vs_grid"] = pbt_vs_grid(out)
    json.dump(results, open(path, "w"), indent=2)
  print(json.dumps(results, indent=2))
