"""A markdown report with PNG plots from one or more ``results.json`` files.

    write_report("runs/demo")   # reads runs/demo/results.json and runs/demo/*/results.json

writes ``report.md`` beside them and the plots into ``plots/``, referenced by relative path. The
report opens with, per evaluation, a plain sentence on whether the rule beat tuned Adam and one on
whether the tasks were inside its meta-training distribution.
"""
from __future__ import annotations

import glob
import json
import os
import re

from metalearn.evaluate import files, generations, plots
from metalearn.evaluate.baselines import PRIMARY
from metalearn.evaluate.runner import FORMAT, RESULTS
from metalearn.evaluate.summary import (COMPARED, distribution_sentence, speedup_text,
                                        trials_text, verdict)

PLOTS = "plots"


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


def _short(x) -> str:
  return "—" if x is None else ("not reached" if x == 0 else f"{x:.2f}×")


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "eval"


def _trials(x) -> str:
  return "never" if x is None else f"{x:.2g}"


def _section(res: dict, label: str, slug: str, directory: str) -> list[str]:
  if not res.get("tasks"):
    return [f"## {label}", "", "No task finished yet.", ""]
  curves_png = os.path.join(PLOTS, f"{slug}_curves.png")
  speedup_png = os.path.join(PLOTS, f"{slug}_speedup.png")
  plots.plot_curves(res, os.path.join(directory, curves_png))
  plots.plot_speedups(res, os.path.join(directory, speedup_png))
  s = res["summary"]
  names = [n for n in COMPARED if n in res["baselines"]]
  tuned = [n for n in names if "best_lr_at_edge" in res["tasks"][0]["optimizers"][n]]
  labels = {n: res["baselines"][n]["label"] for n in names}
  lines = [f"## {label}", "", verdict(res), distribution_sentence(res), "",
           f"Optimizer `{res['optimizer']}` (rule `{res['rule']['name']}`, fingerprint "
           f"`{res['rule']['fingerprint']}`) on suite `{res['suite']}`: {s['num_tasks']} tasks, "
           f"{res['seeds']} seeds" + ("." if res.get("complete") else " — **incomplete run**."),
           "", "### Summary", "",
           "| vs | reached its final loss | median speedup | faster (speedup > 1) "
           "| geo-mean speedup (reached) | rule's final loss lower |", "|---|---|---|---|---|---|"]
  for n in names:
    v = s["vs"][n]
    name = labels[n] if n not in tuned else f"tuned {labels[n]}"
    lines.append(f"| {name}{' (primary)' if n == PRIMARY else ''} | {v['num_reached']}/"
                 f"{v['num_tasks']} | {speedup_text(v['median_speedup'])} | {v['num_faster']} | "
                 f"{speedup_text(v['geomean_speedup'])} | {v['num_lower_final_loss']}/"
                 f"{s['num_tasks']} |")
  lines += ["", f"Trials to match: {trials_text(s)}. (A trial is one Adam run with a learning "
            "rate drawn at random from its grid; the number is the expected count until one "
            "reaches the rule's final loss: higher is better for the rule.)", "",
            f"Learned-rule divergences: {s['rule_diverged_runs']} of "
            f"{s['num_tasks'] * res['seeds']} runs, on {s['rule_diverged_tasks']} of "
            f"{s['num_tasks']} tasks.", "",
            "### Final training loss (smoothed, mean over seeds) and best learning rates", "",
            "| task | steps | learned rule | " + " | ".join(
                f"{labels[n]}" + (" (lr)" if n in tuned else "") for n in names)
            + " | Adam trials to match |", "|---|---|---|" + "---|" * len(names) + "---|"]
  for t in res["tasks"]:
    opt = t["optimizers"]
    cells = [_fmt(opt[n]["final_train_loss"]) + (
        f" ({opt[n]['best_lr']:.2g}" + (", edge" if opt[n]["best_lr_at_edge"] else "") + ")"
        if n in tuned else "") for n in names]
    rule = _fmt(opt["rule"]["final_train_loss"]) + (
        f" ({opt['rule']['diverged_seeds']} diverged)" if opt["rule"]["diverged_seeds"] else "")
    lines.append(f"| `{t['name']}` | {t['num_steps']} | {rule} | " + " | ".join(cells)
                 + f" | {_trials(t['trials_to_match'])} |")
  lines += ["", "### Speedup of the learned rule", "",
            "| task | " + " | ".join(f"vs {labels[n]}" for n in names) + " |",
            "|---|" + "---|" * len(names)]
  for t in res["tasks"]:
    lines.append(f"| `{t['name']}` @{t['num_steps']} | "
                 + " | ".join(_short(t["speedup"][n]) for n in names) + " |")
  lines += ["", "### Held-out test loss (final parameters, mean over seeds)", "",
            "| task | learned rule | " + " | ".join(labels[n] for n in names) + " |",
            "|---|---|" + "---|" * len(names)]
  for t in res["tasks"]:
    opt = t["optimizers"]
    lines.append(f"| `{t['name']}` @{t['num_steps']} | {_fmt(opt['rule']['final_test_loss'])} | "
                 + " | ".join(_fmt(opt[n]["final_test_loss"]) for n in names) + " |")
  lines += ["", "### Tasks and the rule's meta-training distribution", "",
            "| task | inside? | why | judged by |", "|---|---|---|---|"]
  for t in res["tasks"]:
    d = t["distribution"]
    inside = {True: "inside", False: "outside", None: "unknown"}[d["inside"]]
    lines.append(f"| `{t['name']}` @{t['num_steps']} | {inside} | {d['why']} | {d['by']} |")
  lines += ["", f"![training curves]({curves_png})", "", f"![speedups]({speedup_png})", ""]
  return lines


def write_report(directory: str) -> str:
  """Writes ``directory/report.md`` (and plots) from the results found there; returns its path.

  A directory that is not writable raises ``files.WorkdirError`` before anything is written.
  A self-improvement workdir gets the generations report (``generations.py``) instead.
  """
  if generations.is_self_improve(directory):
    return generations.write_generations_report(directory)
  paths = find_results(directory)
  if not paths:
    raise FileNotFoundError(f"no {RESULTS} in {directory} or its subdirectories; run `metalearn "
                            f"evaluate --optimizer ... --suite ... --workdir {directory}` first.")
  files.check_writable_dir(directory, "the report directory")
  files.check_writable_dir(os.path.join(directory, PLOTS), "the report directory")
  import matplotlib
  matplotlib.use("Agg")
  evaluations = []
  for p in paths:
    with open(p) as f:
      res = json.load(f)
    if res.get("format") != FORMAT:
      raise ValueError(f"{p} was written by an older metalearn (format {res.get('format')!r}); "
                       f"run `metalearn evaluate` again with --workdir {os.path.dirname(p)} (its "
                       "cached runs are reused).")
    rel = os.path.relpath(os.path.dirname(p), directory)
    evaluations.append((res, rel))
  lines = ["# Learned optimizer evaluation", ""]
  for res, rel in evaluations:
    where = "" if rel == "." else f"`{rel}`: "
    lines += [f"* {where}{verdict(res)} {distribution_sentence(res)}"]
  lines += ["", "Speedup: steps the baseline needs to reach its own final (smoothed, "
            "seed-averaged) training loss, divided by the steps the learned rule needs to reach "
            "it; *not reached* = 0. Tuned baselines are tuned per task over a learning-rate grid "
            "on the final training loss (`edge`: the best learning rate is at the end of its "
            "grid); the untuned default is Adam at 1e-3. See docs/evaluation.md.", ""]
  for res, rel in evaluations:
    title = f"{res['optimizer']} on {res['suite']}"
    lines += _section(res, title if rel == "." else f"{rel}: {title}",
                      "results" if rel == "." else _slug(rel), directory)
  out = os.path.join(directory, "report.md")
  files.write_text(out, "\n".join(lines))
  return out
