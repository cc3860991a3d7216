"""A markdown report with PNG plots from one or more ``results.json`` files.

    write_report("runs/demo")   # reads runs/demo/results.json and runs/demo/*/results.json

writes ``report.md`` beside them and the plots into ``plots/``, referenced by relative path.
"""
from __future__ import annotations

import glob
import json
import os
import re

import numpy as np

from metalearn.evaluate.runner import BASELINES, PRIMARY, RESULTS

PLOTS = "plots"
COLORS = {"rule": "C3", "adam": "C0", "adamw": "C2", "sgdm": "C1"}


def find_results(directory: str) -> list[str]:
  """``directory/results.json`` and ``directory/*/results.json``, sorted."""
  paths = [os.path.join(directory, RESULTS)] + sorted(
      glob.glob(os.path.join(directory, "*", RESULTS)))
  return [p for p in paths if os.path.isfile(p)]


def _fmt(x, digits: int = 4) -> str:
  if x is None:
    return "—"
  if isinstance(x, float) and (abs(x) >= 1e4 or 0 < abs(x) < 1e-3):
    return f"{x:.2e}"
  return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _speedup_text(x) -> str:
  if x is None:
    return "n/a"
  return "not reached" if x == 0 else f"{x:.2f}×"


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "eval"


def _plot_curves(res: dict, path: str) -> None:
  import matplotlib.pyplot as plt
  tasks = res["tasks"]
  cols = min(3, len(tasks))
  rows = -(-len(tasks) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
  for ax, t in zip(axes.ravel(), tasks):
    for name, entry in t["optimizers"].items():
      y = np.array([np.nan if v is None or v <= 0 else v for v in entry["curve"]["loss"]])
      label = "learned rule" if name == "rule" else (
          f"{res['baselines'][name]['label']} lr={entry['best_lr']:.2g}")
      ax.plot(entry["curve"]["step"], y, color=COLORS.get(name), label=label,
              lw=2.0 if name == "rule" else 1.2, ls="--" if name == "adamw" else "-")
    ax.set_yscale("log")
    ax.set_title(t["id"], fontsize=8)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("train loss (smoothed)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
  for ax in axes.ravel()[len(tasks):]:
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def _plot_speedups(res: dict, path: str) -> None:
  import matplotlib.pyplot as plt
  tasks = res["tasks"]
  x = np.arange(len(tasks))
  width = 0.8 / len(BASELINES)
  fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(tasks) + 2), 3.6))
  for i, b in enumerate(BASELINES):
    vals = [t["speedup"].get(b.name) for t in tasks]
    heights = [0.0 if v is None else v for v in vals]
    xs = x + (i - (len(BASELINES) - 1) / 2) * width
    ax.bar(xs, heights, width, color=COLORS[b.name], label=f"vs tuned {b.label}")
    for xi, v in zip(xs, vals):
      if v == 0:
        ax.text(xi, 0.02, "×", ha="center", va="bottom", fontsize=8, color=COLORS[b.name])
  ax.axhline(1.0, color="k", lw=0.8, ls="--")
  ax.set_xticks(x)
  ax.set_xticklabels([t["id"] for t in tasks], rotation=30, ha="right", fontsize=7)
  ax.set_ylabel("speedup (× = not reached)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def _section(res: dict, label: str, slug: str, directory: str) -> list[str]:
  if not res.get("tasks"):
    return [f"## {label}", "", "No task finished yet.", ""]
  os.makedirs(os.path.join(directory, PLOTS), exist_ok=True)
  curves_png = os.path.join(PLOTS, f"{slug}_curves.png")
  speedup_png = os.path.join(PLOTS, f"{slug}_speedup.png")
  _plot_curves(res, os.path.join(directory, curves_png))
  _plot_speedups(res, os.path.join(directory, speedup_png))
  s = res["summary"]
  names = [b.name for b in BASELINES]
  labels = {b.name: res["baselines"][b.name]["label"] for b in BASELINES}
  lines = [f"## {label}", "",
           f"Optimizer `{res['optimizer']}` (rule `{res['rule']['name']}`, fingerprint "
           f"`{res['rule']['fingerprint']}`) on suite `{res['suite']}`: {s['num_tasks']} tasks, "
           f"{res['seeds']} seeds" + ("." if res.get("complete") else " — **incomplete run**."),
           "", "### Summary", "",
           "| vs tuned | median speedup | geo-mean speedup (reached) | reached its final loss "
           "| lower final loss |", "|---|---|---|---|---|"]
  for n in names:
    v = s["vs"][n]
    reached = (f"{v['num_reached']}/{v['num_tasks']}" if v["num_tasks"] else "—")
    lines.append(f"| {labels[n]}{' (primary)' if n == PRIMARY else ''} | "
                 f"{_speedup_text(v['median_speedup'])} | {_speedup_text(v['geomean_speedup'])} | "
                 f"{reached} | {v['num_lower_final_loss']}/{s['num_tasks']} |")
  lines += ["", f"Learned-rule divergences: {s['rule_diverged_runs']} of "
            f"{s['num_tasks'] * res['seeds']} runs, on {s['rule_diverged_tasks']} of "
            f"{s['num_tasks']} tasks.", "",
            "### Final training loss (smoothed, mean over seeds) and best learning rates", "",
            "| task | steps | learned rule | " + " | ".join(
                f"{labels[n]} (lr)" for n in names) + " | speedup vs " + " / ".join(names) + " |",
            "|---|---|---|" + "---|" * len(names) + "---|"]
  for t in res["tasks"]:
    opt = t["optimizers"]
    cells = [f"{_fmt(opt[n]['final_train_loss'])} ({opt[n]['best_lr']:.2g}"
             + (", edge" if opt[n]["best_lr_at_edge"] else "") + ")" for n in names]
    rule = _fmt(opt["rule"]["final_train_loss"]) + (
        f" ({opt['rule']['diverged_seeds']} diverged)" if opt["rule"]["diverged_seeds"] else "")
    lines.append(f"| `{t['name']}` | {t['num_steps']} | {rule} | " + " | ".join(cells) + " | "
                 + " / ".join(_speedup_text(t["speedup"][n]) for n in names) + " |")
  lines += ["", "### Held-out test loss (final parameters, mean over seeds)", "",
            "| task | learned rule | " + " | ".join(labels[n] for n in names) + " |",
            "|---|---|" + "---|" * len(names)]
  for t in res["tasks"]:
    opt = t["optimizers"]
    lines.append(f"| `{t['name']}` @{t['num_steps']} | {_fmt(opt['rule']['final_test_loss'])} | "
                 + " | ".join(_fmt(opt[n]["final_test_loss"]) for n in names) + " |")
  lines += ["", f"![training curves]({curves_png})", "", f"![speedups]({speedup_png})", ""]
  return lines


def write_report(directory: str) -> str:
  """Writes ``directory/report.md`` (and plots) from the results found there; returns its path."""
  paths = find_results(directory)
  if not paths:
    raise FileNotFoundError(f"no {RESULTS} in {directory} or its subdirectories; run `metalearn "
                            f"evaluate --optimizer ... --suite ... --workdir {directory}` first.")
  import matplotlib
  matplotlib.use("Agg")
  lines = ["# Learned optimizer evaluation", "",
           "Speedup: steps the tuned baseline needs to reach its own final (smoothed, "
           "seed-averaged) training loss, divided by the steps the learned rule needs to reach "
           "it; *not reached* = 0. Baselines are tuned per task over a learning-rate grid on the "
           "final training loss; `edge` marks a best learning rate at the end of its grid. See "
           "docs/evaluation.md.", ""]
  for p in paths:
    with open(p) as f:
      res = json.load(f)
    rel = os.path.relpath(os.path.dirname(p), directory)
    title = f"{res['optimizer']} on {res['suite']}"
    lines += _section(res, title if rel == "." else f"{rel}: {title}",
                      "results" if rel == "." else _slug(rel), directory)
  out = os.path.join(directory, "report.md")
  tmp = out + ".tmp"
  with open(tmp, "w") as f:
    f.write("\n".join(lines))
  os.replace(tmp, out)
  return out
