"""The report of a self-improvement workdir (``metalearn.meta.self_improve``): generations.

    write_generations_report("runs/self_improve")   # what `metalearn report DIR` does there

It reads ``lineage.jsonl`` and ``config.json``, evaluates each generation's best rule
(``generations/gen_NNN.safetensors``) against the tuned baselines on the config's held-out tasks
(``heldout_suite`` / ``heldout_tasks``, with ``metalearn.evaluate.run_evaluation``; results in
``heldout/gen_NNN/results.json``, runs cached in ``$METALEARN_EVAL_CACHE`` or ``heldout/runs``),
and writes ``report.md`` with three figures: fitness per generation (best and median), the lineage
tree, and the held-out score per generation. The held-out score of a rule is the median over tasks
of its final training loss divided by tuned Adam's (lower is better; below 1 beats tuned Adam).
"""
from __future__ import annotations

import json
import os

import numpy as np

from metalearn.evaluate import files
from metalearn.evaluate.generation_plots import plot_fitness, plot_heldout, plot_lineage
from metalearn.evaluate.plots import save_png
from metalearn.evaluate.runner import run_evaluation
from metalearn.meta.proven import same_theta

LINEAGE = "lineage.jsonl"   # as metalearn.meta.self_improve writes it
HELDOUT = "heldout"
PLOTS = "plots"


MODES = {"best": "the previous generation's best rule trains every member",
         "elite": "the best rule of any generation so far trains every member",
         "own": "each member's own rule trains it",
         "proven": "half the members are trained by the incumbent, half by the challenger (the "
                   "previous generation's best member whose rule is not the incumbent's); the "
                   "half that gained more fitness names the next incumbent",
         "adam": "the control: Adam trains every member"}


def is_self_improve(directory: str) -> bool:
  return os.path.isfile(os.path.join(directory, LINEAGE))


def read_lineage(directory: str) -> list[dict]:
  with open(os.path.join(directory, LINEAGE)) as f:
    return [json.loads(line) for line in f if line.strip()]


def by_generation(lineage: list[dict]) -> dict[int, list[dict]]:
  out: dict[int, list[dict]] = {}
  for r in lineage:
    out.setdefault(r["generation"], []).append(r)
  return {g: sorted(rs, key=lambda r: r["member"]) for g, rs in sorted(out.items())}


def heldout_score(results: dict) -> tuple[float | None, dict]:
  """(median over tasks of rule / tuned Adam final training loss, {task id: ratio})."""
  ratios = {}
  for t in results["tasks"]:
    rule, adam = (t["optimizers"][k]["final_train_loss"] for k in ("rule", "adam"))
    ratios[t["id"]] = (float("inf") if rule is None else rule / adam) if adam else None
  vals = [v for v in ratios.values() if v is not None]
  return (float(np.median(vals)) if vals else None), ratios


def evaluate_generations(directory: str, config: dict, *, cache_dir: str | None = None,
                         progress: bool = False) -> dict[int, dict]:
  """Held-out results of each generation's best rule (cached runs are reused)."""
  cache_dir = cache_dir or os.environ.get("METALEARN_EVAL_CACHE") or os.path.join(
      directory, HELDOUT, "runs")
  out = {}
  for g in sorted(by_generation(read_lineage(directory))):
    path = os.path.join(directory, "generations", f"gen_{g:03d}.safetensors")
    if not os.path.isfile(path):
      continue
    out[g] = run_evaluation(path, config.get("heldout_suite", "out_of_distribution"),
                            os.path.join(directory, HELDOUT, f"gen_{g:03d}"),
                            seeds=config.get("heldout_seeds", 2), cache_dir=cache_dir,
                            progress=progress, task_ids=list(config.get("heldout_tasks") or ()))
  return out


def same_rule(directory: str, g: int, h: int) -> bool:
  """Whether generations ``g`` and ``h`` saved the same best rule (equal meta-parameters)."""
  import metalearn.artifacts as artifacts
  a, b = (artifacts.resolve(os.path.join(directory, "generations", f"gen_{x:03d}.safetensors"))[1]
          for x in (g, h))
  return same_theta(a, b)


# -- the report ------------------------------------------------------------------------------------


def _f(x, d=4):
  return "—" if x is None else f"{x:.{d}g}"


def _name(t) -> str:
  return t if isinstance(t, str) else f"gen {t['generation']} member {t['member']}"


def _trainer(rs, incumbent=None) -> str:
  """Who trained a generation's members: one rule, or (``"proven"``) the incumbent (``incumbent``,
  the previous generation's ``meta_optimizer_next``) and the challenger, each with its members'
  mean fitness gain, and which of them goes on."""
  if rs[0].get("trained_by") is None:
    return "— (initial)"
  names = [_name(r["trained_by"]) for r in rs]
  if len(set(names)) == 1:
    return names[0]
  first = _name(incumbent) if incumbent else None
  order = sorted(dict.fromkeys(names), key=lambda n: n != first)   # the incumbent first
  parts = []
  for n in order:
    gains = [r["meta_gain"] for r, m in zip(rs, names) if m == n and r.get("meta_gain") is not None]
    role = ("incumbent " if n == first else "challenger ") if first in names else ""
    parts.append(f"{role}{n} ({names.count(n)}"
                 + (f", gain {np.mean(gains):.3g}" if gains else "") + ")")
  nxt = rs[0].get("meta_optimizer_next")
  return " vs ".join(parts) + (f"; next: {_name(nxt)}" if nxt else "")


def _kept(rs) -> str:
  """How many members kept (some point of) their generation's training, with acceptance on: a
  population where none does has stopped moving, whatever its meta-optimizer."""
  flags = [r["accepted"] for r in rs if r.get("accepted") is not None]
  return f"{sum(flags)}/{len(rs)}" if flags else "—"


def write_generations_report(directory: str, *, evaluate: bool = True,
                             cache_dir: str | None = None) -> str:
  """Writes ``directory/report.md`` and its figures (module docstring); returns its path."""
  files.check_writable_dir(directory, "the report directory")
  files.check_writable_dir(os.path.join(directory, PLOTS), "the report directory")
  import matplotlib
  matplotlib.use("Agg")
  with open(os.path.join(directory, "config.json")) as f:
    config = json.load(f)
  gens = by_generation(read_lineage(directory))
  if not gens:
    raise ValueError(f"{directory}/{LINEAGE} is empty: no generation finished yet; run "
                     f"`metalearn self-improve` on it first.")
  title = f"{config.get('name')} ({config.get('rule')}, meta-optimizer {config.get('meta_optimizer')}, init {config.get('init')})"
  plot_fitness(gens, title, os.path.join(directory, PLOTS, "fitness.png"))
  plot_lineage(gens, title, os.path.join(directory, PLOTS, "lineage.png"))
  results = evaluate_generations(directory, config, cache_dir=cache_dir) if evaluate else {}
  scores, ratios = {}, {}
  for g, res in results.items():
    scores[g], ratios[g] = heldout_score(res)
  mode = config.get("meta_optimizer")
  horizon = config.get("meta_optimizer_horizon") or 0
  extras = ([f"told a {horizon}-step horizon and restarted every {horizon} outer steps"]
            if horizon and mode != "adam" else [])
  if config.get("accept", "always") == "improved":
    extras.append("a member keeps a generation's training only if its fitness improved")
  length = f"{config.get('generation_steps')} outer steps per generation"
  if config.get("generation_end") == "passed":
    tol = config.get("dominance_tolerance", 0.0)
    length = ("a generation ends when a member passes the previous best (no worse on any "
              "meta-validation task" + (f" by more than {tol}" if tol else "") +
              f", mean lower by more than {config.get('pass_margin', 0.0)}) "
              f"at a check from step {config.get('generation_min_steps', 0)} on, or after "
              f"{config.get('generation_steps')} outer steps")
  lines = [f"# Self-improvement: {config.get('name')}", "",
           f"Rule `{config.get('rule')}`, population {config.get('population_size')}, "
           f"init `{config.get('init')}`, meta-optimizer `{mode}` ({MODES.get(mode, mode)}"
           + "".join(f"; {e}" for e in extras) + "), "
           f"{length}, estimator "
           f"`{config.get('estimator')}`; {len(gens) - 1} generations after the initial one.", ""]
  if scores:
    xs = sorted(scores)
    better = [g for g in xs[1:] if None not in (scores[g], scores[xs[xs.index(g) - 1]])
              and scores[g] < scores[xs[xs.index(g) - 1]]]
    first, last = scores[xs[0]], scores[xs[-1]]
    kept = [g for g in xs[1:] if same_rule(directory, g, xs[xs.index(g) - 1])]
    changed = [g for g in xs[1:] if g not in kept]
    lines += [f"Held-out ({config.get('heldout_suite')}: {', '.join(sorted(ratios[xs[0]]))}): "
              f"the best rule's median final loss relative to tuned Adam went from "
              f"{_f(first)} (generation {xs[0]}) to {_f(last)} (generation {xs[-1]}); "
              f"{len(better)} of {len(xs) - 1} generations improved on the previous one "
              f"(generations {better or 'none'}). "
              f"{len(changed)} generation{'' if len(changed) == 1 else 's'} had a new best rule "
              f"(generations {changed or 'none'}; "
              f"{len([g for g in changed if g in better])} of them improved on held-out); in "
              f"{len(kept)} the previous best stayed (a tie: generations {kept or 'none'}).", ""]
    plot_heldout(scores, ratios, title, os.path.join(directory, PLOTS, "heldout.png"))
  lines += ["| generation | outer steps | trained by | best member | best fitness | median fitness "
            "| kept their training | copied (member <- parent) | held-out median vs tuned Adam |",
            "|---|---|---|---|---|---|---|---|---|"]
  for g, rs in gens.items():
    best = next(r for r in rs if r["best"])
    copies = [f"{r['member']}<-{r['parent']}" for r in rs
              if r.get("parent") is not None and r["parent"] != r["member"]]
    steps = rs[0].get("steps", config.get("generation_steps")) if g else 0
    lines.append(f"| {g} | {steps} | {_trainer(rs, gens.get(g - 1, [{}])[0].get('meta_optimizer_next'))} | {best['member']} | {_f(best['fitness'])} | "
                 f"{_f(float(np.median([r['fitness'] for r in rs])))} | {_kept(rs)} | "
                 f"{', '.join(copies) or '—'} | {_f(scores.get(g))} |")
  if ratios:
    tasks = sorted({t for g in ratios for t in ratios[g]})
    lines += ["", "### Held-out, per task: best rule's final training loss / tuned Adam's", "",
              "| generation | " + " | ".join(f"`{t}`" for t in tasks) + " |",
              "|---|" + "---|" * len(tasks)]
    for g in sorted(ratios):
      lines.append(f"| {g} | " + " | ".join(_f(ratios[g].get(t), 3) for t in tasks) + " |")
  lines += ["", "Fitness: mean over the meta-validation tasks and seeds of log(final training loss "
            "/ initial loss) after training from scratch (lower is better). Full held-out "
            f"results: `{HELDOUT}/gen_NNN/results.json`.", "",
            f"![fitness per generation]({PLOTS}/fitness.png)", "",
            f"![lineage]({PLOTS}/lineage.png)", ""]
  if scores:
    lines += [f"![held-out per generation]({PLOTS}/heldout.png)", ""]
  out = os.path.join(directory, "report.md")
  files.write_text(out, "\n".join(lines))
  return out


def plot_comparison(runs: dict[str, str], path: str) -> None:
  """Best and median fitness, and the held-out score, per generation of several workdirs
  ({label: directory}, e.g. a self-improvement run and its Adam control) side by side."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
  for i, (label, d) in enumerate(runs.items()):
    gens = by_generation(read_lineage(d))
    xs = list(gens)
    a1.plot(xs, [min(r["fitness"] for r in gens[g]) for g in xs], "o-", color=f"C{i}",
            label=f"{label}: best")
    a1.plot(xs, [float(np.median([r["fitness"] for r in gens[g]])) for g in xs], "s--",
            color=f"C{i}", alpha=0.6, label=f"{label}: median")
    scores = {}
    for g in xs:
      p = os.path.join(d, HELDOUT, f"gen_{g:03d}", "results.json")
      if os.path.isfile(p):
        with open(p) as f:
          scores[g] = heldout_score(json.load(f))[0]
    a2.plot(list(scores), [np.nan if v is None else v for v in scores.values()], "o-",
            color=f"C{i}", label=label)
  a1.set(xlabel="generation", ylabel="meta-validation fitness (lower is better)")
  a2.set(xlabel="generation", ylabel="held-out: median final loss / tuned Adam's", yscale="log")
  a2.axhline(1.0, color="k", ls="--", lw=1)
  a1.legend(fontsize=8)
  a2.legend(fontsize=8)
  save_png(fig, path)
