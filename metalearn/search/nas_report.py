"""The report of an architecture search: best validation accuracy against inner steps spent, and the
Pareto front of parameter count against accuracy, one curve per side (PNG + markdown).

    write_nas_report({"learned": history, "adam": history}, "runs/c/report", final=final_results)
"""
from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from metalearn.files import atomic_write  # noqa: E402
from metalearn.search.report import pareto_mask  # noqa: E402

REPORT = "report.md"


def _save(fig, path: str) -> None:
  fig.set_size_inches(7, 4.5)
  fig.tight_layout()
  atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
  plt.close(fig)


def pareto_front(history: list[dict]) -> list[dict]:
  """Candidates no other has beaten in both fewer parameters and higher validation accuracy,
  by parameter count."""
  if not history:
    return []
  costs = np.array([[r["num_params"], -r["val_accuracy"]] for r in history], float)
  keep = pareto_mask(costs)
  return sorted((r for r, k in zip(history, keep) if k), key=lambda r: r["num_params"])


def arch_label(arch: dict) -> str:
  return arch["family"] + "(" + ", ".join(f"{k}={v}" for k, v in arch.items()
                                          if k != "family") + ")"


def plot_best_vs_steps(histories: dict, path: str) -> None:
  fig, ax = plt.subplots()
  for i, (side, h) in enumerate(histories.items()):
    if h:
      steps = [r["cum_steps"] for r in h]
      ax.step(steps, [100 * r["best_val_accuracy"] for r in h], where="post", c=f"C{i}",
              label=f"{side} ({len(h)} candidates, {steps[-1]:,} steps)")
  ax.set(xscale="log", xlabel="total inner steps spent", ylabel="best validation accuracy (%)",
         title="Architecture search: best found vs compute")
  ax.legend()
  _save(fig, path)


def plot_pareto(histories: dict, path: str) -> None:
  fig, ax = plt.subplots()
  for i, (side, h) in enumerate(histories.items()):
    if not h:
      continue
    ax.scatter([r["num_params"] for r in h], [100 * r["val_accuracy"] for r in h], s=12,
               c=f"C{i}", alpha=0.35)
    front = pareto_front(h)
    ax.plot([r["num_params"] for r in front], [100 * r["val_accuracy"] for r in front], "o-",
            c=f"C{i}", label=f"{side}: Pareto front")
  ax.set(xscale="log", xlabel="parameters", ylabel="validation accuracy (%)",
         title="Parameters against accuracy")
  ax.legend()
  _save(fig, path)


def write_nas_report(histories: dict, workdir: str, *, final: dict | None = None,
                     title: str = "Architecture search", extra: str = "") -> str:
  """Writes ``report.md``, ``best_vs_steps.png``, ``pareto.png`` and ``summary.json``."""
  os.makedirs(workdir, exist_ok=True)
  plot_best_vs_steps(histories, os.path.join(workdir, "best_vs_steps.png"))
  plot_pareto(histories, os.path.join(workdir, "pareto.png"))
  lines = [f"# {title}", "", "| side | candidates | inner steps | best val. acc. | best "
           "architecture | params |", "|---|---|---|---|---|---|"]
  summary = {"sides": {}}
  for side, h in histories.items():
    if not h:
      lines.append(f"| {side} | 0 | 0 | - | - | - |")
      continue
    b = max(h, key=lambda r: (r["val_accuracy"], -r["num_params"]))
    lines.append(f"| {side} | {len(h)} | {h[-1]['cum_steps']:,} | {100 * b['val_accuracy']:.2f}% "
                 f"| `{arch_label(b['arch'])}` | {b['num_params']:,} |")
    summary["sides"][side] = {"candidates": len(h), "total_steps": h[-1]["cum_steps"],
                              "best": {k: b[k] for k in ("arch", "val_accuracy", "num_params",
                                                         "learning_rate")},
                              "pareto_front": [{k: r[k] for k in ("arch", "val_accuracy",
                                                                  "num_params")}
                                               for r in pareto_front(h)]}
  steps = {s: h[-1]["cum_steps"] for s, h in histories.items() if h}
  if len(steps) == 2:
    a, b = sorted(steps, key=steps.get)
    lines += ["", f"`{a}` spent {steps[b] / steps[a]:.2f}x fewer inner steps than `{b}`."]
    summary["step_ratio"] = steps[b] / steps[a]
  lines += ["", "![best vs steps](best_vs_steps.png)", "", "![Pareto front](pareto.png)", ""]
  for side, h in histories.items():
    lines += [f"### Pareto front, {side}", "", "| params | val. acc. | architecture |",
              "|---|---|---|"]
    lines += [f"| {r['num_params']:,} | {100 * r['val_accuracy']:.2f}% | "
              f"`{arch_label(r['arch'])}` |" for r in pareto_front(h)]
    lines.append("")
  if final:
    lines += ["## Final training of each side's best architecture", "",
              "| searched by | trained with | learning rate | val. acc. | test acc. (mean ± sd "
              "over seeds) |", "|---|---|---|---|---|"]
    for key, r in final.items():
      side, opt = key.split("/")
      lr = "-" if opt == "rule" else f"{r['learning_rate']:.3g}"
      lines.append(f"| {side} | {opt} | {lr} | {100 * r['val_accuracy']:.2f}% | "
                   f"{100 * r['test_accuracy']:.2f}% ± {100 * r['test_accuracy_sd']:.2f} |")
    summary["final"] = final
  text = "\n".join(lines + ["", extra]).rstrip() + "\n"
  atomic_write(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=2))
  path = os.path.join(workdir, REPORT)
  atomic_write(path, text)
  return path
