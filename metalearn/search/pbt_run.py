"""PBT from a search config (``mode="pbt"``): ``pbt.json`` (the schedule), results and a report.

The config's ``space`` gives each mutable hyperparameter's bounds as ``("log", low, high)``;
``pbt`` holds ``population`` (16), ``num_intervals`` (8), ``exploit`` (0.25), ``perturb``
((0.8, 1.25)) and ``init`` ("grid": log-even over the bounds, the points a grid search would try;
or "random": log-uniform draws).
"""
from __future__ import annotations

import json
import os

import numpy as np

from metalearn.files import atomic_write
from metalearn.search.pbt import PBT
from metalearn.search.space import Space
from metalearn.tasks import TaskSpec, make_task

PBT_DEFAULTS = {"population": 16, "num_intervals": 8, "exploit": 0.25, "perturb": (0.8, 1.25),
                "init": "grid"}
SCHEDULE = "pbt.json"


def bounds_from_space(space) -> dict:
  if not isinstance(space, dict):
    raise ValueError("PBT needs a declarative space: {name: ('log', low, high)}.")
  Space(space)   # the usual checks first
  out = {}
  for n, entry in space.items():
    if not (isinstance(entry, tuple) and entry[0] in ("log", "float")):
      raise ValueError(f"PBT: {n!r} must be a continuous range ('log', low, high), got {entry!r}.")
    out[n] = (float(entry[1]), float(entry[2]))
  return out


def init_grid(bounds: dict, population: int) -> dict:
  """Log-even points; with several hyperparameters, a grid of ~population^(1/d) per axis."""
  names = sorted(bounds)
  per = int(np.ceil(population ** (1 / len(names))))
  axes = [np.geomspace(*bounds[n], per) for n in names]
  mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(names))[:population]
  return {n: mesh[:, i] for i, n in enumerate(names)}


def run_pbt_search(config: dict, workdir: str, *, report: bool = True) -> dict:
  opts = {**PBT_DEFAULTS, **dict(config.get("pbt") or {})}
  unknown = set(opts) - set(PBT_DEFAULTS)
  if unknown:
    raise ValueError(f"search config: unknown pbt keys {sorted(unknown)}; valid: "
                     f"{sorted(PBT_DEFAULTS)}.")
  if opts["init"] not in ("grid", "random"):
    raise ValueError(f"pbt init must be grid or random, got {opts['init']!r}.")
  if not config.get("task"):
    raise ValueError("search config: PBT needs a 'task' (a TaskSpec dict).")
  bounds = bounds_from_space(config["space"])
  task = make_task(TaskSpec.from_dict(dict(config["task"])))
  pbt = PBT(task, config["optimizer"], num_steps=config["num_steps"],
            num_intervals=opts["num_intervals"], bounds=bounds, population=opts["population"],
            exploit=opts["exploit"], perturb=opts["perturb"], seed=config["seed"])
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f"workdir {workdir} is a file; pass a directory.")
  os.makedirs(workdir, exist_ok=True)
  init = init_grid(bounds, opts["population"]) if opts["init"] == "grid" else None
  out = pbt.run(init)
  schedule = PBT.schedule_json(out, bounds)
  best = int(np.nanargmin(np.where(np.isfinite(out["test_loss"]), out["test_loss"], np.nan)))
  schedule.update(best_member=best, lineage=pbt.lineage(out, best),
                  config={k: v for k, v in config.items() if k != "space"})
  atomic_write(os.path.join(workdir, SCHEDULE), json.dumps(schedule, indent=2, default=str))
  summary = {"format": "metalearn.search.v1", "mode": "pbt", "study": config["name"],
             "best_value": float(out["test_loss"][best]), "best_member": best,
             "best_params": {n: float(out["hparams"][n][-1, best]) for n in bounds},
             "best_schedule": {n: [float(out["hparams"][n][k, o])
                                   for k, o in enumerate(schedule["lineage"])] for n in bounds},
             "test_loss": [float(x) for x in out["test_loss"]], "schedule": SCHEDULE}
  atomic_write(os.path.join(workdir, "results.json"), json.dumps(summary, indent=2))
  if report:
    write_pbt_report(schedule, summary, workdir)
  return summary


def plot_lineage(schedule: dict, path: str) -> None:
  """Each member's hyperparameters per interval; dashed lines are exploits (copy from parent)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = sorted(schedule["bounds"])
  fig, axes = plt.subplots(len(names), 1, figsize=(7, 3.2 * len(names)), squeeze=False)
  intervals = schedule["intervals"]
  lineage = schedule["lineage"]
  for ax, n in zip(axes[:, 0], names):
    hp = np.asarray([iv["hparams"][n] for iv in intervals])      # [K, P]
    k_count, pop = hp.shape
    for k, iv in enumerate(intervals[:-1]):   # each member's segment starts where its run was
      for m, parent in enumerate(iv["parent"]):
        style = ("-", "0.7", 1) if parent == m else ("--", "C0", 2)
        ax.plot([k, k + 1], [hp[k, parent], hp[k + 1, m]], style[0], c=style[1], lw=0.8,
                zorder=style[2])
    ax.plot(np.zeros(pop), hp[0], ".", c="0.5", zorder=1)
    ax.plot(range(k_count), [hp[k, o] for k, o in enumerate(lineage)], "o-", c="C3", lw=2,
            zorder=3, label=f"best member's lineage (member {schedule['best_member']})")
    ax.set(yscale="log", ylabel=n, xlabel="interval")
    ax.legend(fontsize=8)
  axes[0, 0].set_title("PBT lineage: grey = a member continues, dashed = exploit + explore")
  fig.tight_layout()
  atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
  plt.close(fig)


def write_pbt_report(schedule: dict, summary: dict, workdir: str) -> str:
  plot_lineage(schedule, os.path.join(workdir, "lineage.png"))
  losses = np.asarray(summary["test_loss"])
  lines = [f"# PBT `{summary['study']}`", "",
           f"Best member {summary['best_member']}: held-out loss **{summary['best_value']:.5g}**; "
           f"population median {np.nanmedian(losses):.5g}.", "",
           "Schedule of the best member (per interval): " + "; ".join(
               f"`{n}` " + ", ".join(f"{v:.3g}" for v in vals)
               for n, vals in summary["best_schedule"].items()), "",
           "## Lineage", "", "![PBT lineage](lineage.png)", "",
           f"The full, replayable schedule is in `{SCHEDULE}` (`PBT.replay`)."]
  path = os.path.join(workdir, "report.md")
  atomic_write(path, "\n".join(lines) + "\n")
  return path
