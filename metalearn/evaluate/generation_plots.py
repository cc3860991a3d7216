"""The figures of a self-improvement report (``generations.write_generations_report``): fitness
per generation, the lineage tree and the held-out score per generation, each from the lineage
records grouped by generation (``generations.by_generation``) or the held-out scores.
"""
from __future__ import annotations

import numpy as np

from metalearn.evaluate.plots import save_png


def plot_fitness(gens: dict, title: str, path: str) -> None:
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4.2))
  xs = list(gens)
  for g, rs in gens.items():
    ax.scatter([g] * len(rs), [r["fitness"] for r in rs], s=12, color="0.6", zorder=1)
  ax.plot(xs, [min(r["fitness"] for r in gens[g]) for g in xs], "o-", color="C3", label="best")
  ax.plot(xs, [float(np.median([r["fitness"] for r in gens[g]])) for g in xs], "s--",
          color="C0", label="median")
  ax.set_xlabel("generation (0: initial population)")
  ax.set_ylabel("fitness: log(final / initial loss), lower is better")
  ax.set_title(f"Meta-validation fitness per generation\n{title}", fontsize=9)
  ax.legend(fontsize=8)
  save_png(fig, path)


def plot_lineage(gens: dict, title: str, path: str) -> None:
  """Nodes: (generation, member), coloured by fitness; edges: the member of the previous
  generation it continued from (copies in red); stars: the best of each generation, whose rule
  trained every member of the next."""
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(1.2 * len(gens) + 3, 0.45 * len(next(iter(gens.values()))) + 2))
  f_all = [r["fitness"] for rs in gens.values() for r in rs]
  lo, hi = min(f_all), max(f_all)
  for g, rs in gens.items():
    for r in rs:
      if r.get("parent") is not None:
        copied = r["parent"] != r["member"]
        ax.plot([g - 1, g], [r["parent"], r["member"]], color="C3" if copied else "0.7",
                lw=1.8 if copied else 0.8, zorder=1)
  sc = None
  for g, rs in gens.items():
    sc = ax.scatter([g] * len(rs), [r["member"] for r in rs], c=[r["fitness"] for r in rs],
                    cmap="viridis_r", vmin=lo, vmax=hi, s=60, zorder=2)
    best = [r for r in rs if r["best"]]
    ax.scatter([g] * len(best), [r["member"] for r in best], marker="*", s=220,
               facecolors="none", edgecolors="k", zorder=3)
  fig.colorbar(sc, ax=ax, label="fitness (lower is better)")
  ax.set_xlabel("generation")
  ax.set_ylabel("member")
  ax.set_xticks(list(gens))
  ax.set_yticks(range(len(next(iter(gens.values())))))
  ax.set_title(f"Lineage: {title}\nred: copied at the PBT exploit; star: the generation's best, "
               "whose rule trains the next", fontsize=9)
  save_png(fig, path)


def plot_heldout(scores: dict, ratios: dict, title: str, path: str) -> None:
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4.2))
  xs = sorted(scores)
  tasks = sorted({t for g in xs for t in ratios[g]})
  for i, t in enumerate(tasks):
    ax.plot(xs, [ratios[g].get(t) or np.nan for g in xs], ".:", color=f"C{i % 8}", alpha=0.6,
            label=t)
  ax.plot(xs, [scores[g] if scores[g] is not None else np.nan for g in xs], "o-", color="k",
          lw=2, label="median over tasks")
  ax.axhline(1.0, color="k", ls="--", lw=1)
  ax.set_yscale("log")
  ax.set_xlabel("generation")
  ax.set_ylabel("final train loss / tuned Adam's (lower is better)")
  ax.set_title(f"Held-out: each generation's best rule vs tuned Adam\n{title}", fontsize=9)
  ax.legend(fontsize=7)
  save_png(fig, path)
