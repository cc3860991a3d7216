"""Reports of a search: ``report.md`` with plots (PNG) beside ``results.json``.

Optimisation history, intermediate values (what the pruner saw), parameter importances (fANOVA,
Optuna's default) and, for a multi-objective study, its Pareto front come from
``optuna.visualization.matplotlib``; a single-objective study gets a Pareto front of final loss
against training steps spent (pruned trials spend fewer) drawn here. PBT reports add the lineage
plot of ``metalearn.search.pbt_run``. Plots that need more trials than a study has are skipped
with a line in the report saying why.
"""
from __future__ import annotations

import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from metalearn.files import atomic_write  # noqa: E402

REPORT = "report.md"


def _save(ax_or_fig, path: str) -> None:
  fig = ax_or_fig.figure if hasattr(ax_or_fig, "figure") and not isinstance(
      ax_or_fig, plt.Figure) else ax_or_fig
  fig.set_size_inches(7, 4.5)
  fig.tight_layout()
  atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
  plt.close(fig)


def pareto_mask(costs: np.ndarray) -> np.ndarray:
  """Which rows of ``costs`` (lower is better in every column) no other row dominates."""
  costs = np.asarray(costs, float)
  keep = np.ones(len(costs), bool)
  for i, c in enumerate(costs):
    others = np.delete(costs, i, axis=0)
    keep[i] = not np.any(np.all(others <= c, 1) & np.any(others < c, 1))
  return keep


def _pareto_plot(study, path: str) -> None:
  pts = [(t.user_attrs.get("steps", 0), t.values[0] if t.state == TrialState.COMPLETE else
          list(t.intermediate_values.values())[-1], t.number)
         for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
         if t.values is not None or t.intermediate_values]
  if not pts:
    raise ValueError("no finished trials")
  steps, value, _ = map(np.asarray, zip(*pts))
  front = pareto_mask(np.stack([steps, value], 1))
  fig, ax = plt.subplots()
  ax.scatter(steps, value, c="0.6", label="trials")
  order = np.argsort(steps[front])
  ax.plot(steps[front][order], value[front][order], "o-", c="C3", label="Pareto front")
  ax.set(xlabel="training steps spent", ylabel="objective (last reported)", yscale="log",
         title="Pareto front: loss against compute")
  ax.legend()
  _save(fig, path)


def write_study_report(study: optuna.Study, workdir: str, names: list[str] | None = None,
                       extra: str = "") -> str:
  """Writes ``report.md`` and its PNG plots into ``workdir``; returns the report's path.

  ``names`` name the objectives (multi-objective studies plot their first objective's history and
  importances, and Optuna's Pareto front of the first two).
  """
  vis = optuna.visualization.matplotlib
  multi = len(study.directions) > 1
  names = list(names or [f"objective {i}" for i in range(len(study.directions))])
  first = dict(target=lambda t: t.values[0], target_name=names[0]) if multi else {}
  plots = {
      "history.png": ("Optimisation history", lambda: vis.plot_optimization_history(
          study, **first)),
      "intermediate.png": ("Intermediate values (pruning)", lambda: vis.plot_intermediate_values(
          study)),
      "importances.png": ("Parameter importances", lambda: vis.plot_param_importances(
          study, **first)),
      "pareto.png": (("Pareto front", lambda: vis.plot_pareto_front(
          study, target_names=names[:2], targets=lambda t: t.values[:2])) if multi else
                     ("Pareto front (loss vs steps)", None)),
  }
  if multi:
    del plots["intermediate.png"]   # multi-objective trials report no intermediate values
  done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
  fmt = lambda t: ", ".join(f"{v:.5g}" for v in t.values)
  lines = [f"# Search `{study.study_name}`", ""]
  if done and not multi:
    best = study.best_trial
    lines += [f"Best value **{best.value:.5g}** (trial {best.number}) with "
              + ", ".join(f"`{k}={v:.4g}`" if isinstance(v, float) else f"`{k}={v}`"
                          for k, v in best.params.items()) + ".", ""]
  elif done:
    lines += [f"Objectives: {', '.join(names)}. {len(study.best_trials)} trials on the Pareto "
              f"front: " + "; ".join(f"trial {t.number} ({fmt(t)})" for t in study.best_trials)
              + ".", ""]
  counts = {s.name.lower(): n for s in TrialState
            if (n := len(study.get_trials(deepcopy=False, states=(s,))))}
  lines += ["Trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".", ""]
  for name, (title, draw) in plots.items():
    path = os.path.join(workdir, name)
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if draw is None:
          _pareto_plot(study, path)
        else:
          _save(draw(), path)
      lines += [f"## {title}", "", f"![{title}]({name})", ""]
    except Exception as e:  # too few trials, one parameter only, ...: say so, keep going
      plt.close("all")
      lines += [f"## {title}", "", f"_not drawn: {type(e).__name__}: {str(e)[:200]}_", ""]
  if done:
    top = sorted(done, key=lambda t: t.values[0])[:10]
    keys = sorted({k for t in top for k in t.params})
    lines += ["## Best trials" + (f" (by {names[0]})" if multi else ""), "",
              f"| trial | {' | '.join(names) if multi else 'value'} | " + " | ".join(keys) + " |",
              "|---|---|" + "---|" * (len(keys) + len(names) - 1)]
    lines += [f"| {t.number} | {' | '.join(f'{v:.5g}' for v in t.values)} | " + " | ".join(
        f"{t.params[k]:.4g}" if isinstance(t.params.get(k), float) else str(t.params.get(k, ""))
        for k in keys) + " |" for t in top]
  text = "\n".join(lines + ["", extra]).rstrip() + "\n"
  path = os.path.join(workdir, REPORT)
  atomic_write(path, text)
  return path
