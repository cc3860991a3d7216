"""The report's figures: training curves per task, and speedups per task and baseline.

Every figure is titled with the optimizer, its fingerprint and the suite, so a PNG on its own says
what it shows. Curves that tend to coincide are drawn so that both stay visible: tuned Adam as a
wide translucent band, AdamW (which differs from Adam only by a weight decay of 1e-4) as a thin
dashed line over it.
"""
from __future__ import annotations

import io

import numpy as np

from metalearn.evaluate import files
from metalearn.evaluate.summary import COMPARED

# name -> matplotlib style; drawn in this order (the rule last, on top).
STYLES = {
    "adam": dict(color="C0", lw=5.0, alpha=0.35, ls="-"),
    "adamw": dict(color="C2", lw=1.4, ls="--"),
    "adamw_cosine": dict(color="C4", lw=1.6, ls="-."),
    "sgdm": dict(color="C1", lw=1.4, ls=":"),
    "default": dict(color="0.45", lw=1.2, ls=(0, (1, 1))),
    "rule": dict(color="C3", lw=2.4, ls="-"),
}
ORDER = ("adam", "adamw", "adamw_cosine", "sgdm", "default", "rule")


def title(res: dict) -> str:
  return (f"learned rule {res['optimizer']} (fingerprint {res['rule']['fingerprint']}) on suite "
          f"{res['suite']}, {res['seeds']} seeds")


def save_png(fig, path: str) -> None:
  """Lays out ``fig``, writes it to ``path`` as a 100-dpi PNG atomically, and closes it."""
  import matplotlib.pyplot as plt
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=100)
  files.write_atomic(path, lambda f: f.write(buf.getvalue()))
  plt.close(fig)


def _label(res: dict, name: str, entry: dict) -> str:
  if name == "rule":
    return "learned rule"
  label = res["baselines"][name]["label"]
  return label if name == "default" else f"tuned {label}, lr={entry['best_lr']:.2g}"


def plot_curves(res: dict, path: str) -> None:
  import matplotlib.pyplot as plt
  tasks = res["tasks"]
  cols = min(3, len(tasks))
  rows = -(-len(tasks) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows + 0.8), squeeze=False)
  for ax, t in zip(axes.ravel(), tasks):
    for name in ORDER:
      entry = t["optimizers"].get(name)
      if entry is None:
        continue
      y = np.array([np.nan if v is None or v <= 0 else v for v in entry["curve"]["loss"]])
      ax.plot(entry["curve"]["step"], y, label=_label(res, name, entry), **STYLES[name])
    ax.set_yscale("log")
    ax.set_title(t["id"], fontsize=9)
    ax.set_xlabel("step", fontsize=9)
    ax.set_ylabel("train loss (smoothed)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7)
  for ax in axes.ravel()[len(tasks):]:
    ax.axis("off")
  fig.suptitle(f"Training curves: {title(res)}", fontsize=11)
  save_png(fig, path)


def plot_speedups(res: dict, path: str) -> None:
  """Horizontal bars: one group per task, one bar per baseline; x marks 'not reached'."""
  import matplotlib.pyplot as plt
  tasks = res["tasks"]
  names = [n for n in COMPARED if n in res["baselines"]]
  height = 0.8 / len(names)
  fig, ax = plt.subplots(figsize=(12, 1.0 + 0.28 * len(names) * len(tasks) + 0.6))
  y = np.arange(len(tasks))[::-1].astype(float)
  top = max([1.5] + [t["speedup"].get(n) or 0 for t in tasks for n in names])
  for i, name in enumerate(names):
    vals = [t["speedup"].get(name) for t in tasks]
    ys = y + ((len(names) - 1) / 2 - i) * height
    label = res["baselines"][name]["label"]
    ax.barh(ys, [v or 0.0 for v in vals], height, color=STYLES[name]["color"],
            label=label if name == "default" else f"vs tuned {label}")
    for yi, v in zip(ys, vals):
      text = "not reached" if v == 0 else ("n/a" if v is None else f"{v:.2f}×")
      ax.text((v or 0) + 0.01 * top, yi, text, va="center", fontsize=8,
              color="k" if v else STYLES[name]["color"])
  ax.axvline(1.0, color="k", lw=1.0, ls="--")
  ax.set_xlim(0, top * 1.15)
  ax.set_yticks(y)
  ax.set_yticklabels([t["id"] for t in tasks], fontsize=10)
  ax.set_xlabel("speedup: baseline's steps / rule's steps to reach the baseline's final loss "
                "(1 = as fast, dashed)", fontsize=10)
  ax.tick_params(axis="x", labelsize=10)
  ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  ax.set_title(f"Speedup per task: {title(res)}", fontsize=11)
  save_png(fig, path)
