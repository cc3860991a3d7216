"""What an evaluation found, in numbers (``summarize``) and in plain sentences.

``summarize`` reduces the per-task results to, per baseline: the share of tasks where the rule
reached the baseline's final loss and the median speedup; plus Adam's trials to match and the
rule's divergences. ``verdict`` and ``distribution_sentence`` say whether the rule beat tuned Adam
and whether the tasks were inside its meta-training distribution; ``summary_text`` is what the
command line prints when an evaluation finishes.
"""
from __future__ import annotations

import os

import numpy as np

from metalearn.evaluate import metrics
from metalearn.evaluate.baselines import BASELINES, DEFAULT, LABELS, PRIMARY
from metalearn.evaluate.suites import META_TRAINING, SuiteTask, designed_inside
from metalearn.tasks import TaskSpec

COMPARED = (*BASELINES, DEFAULT.name)   # every curve the rule's speedup is measured against


def _rule_not_worse(task: dict, baseline: str) -> bool:
  rule, base = (task["optimizers"][k]["final_train_loss"] for k in ("rule", baseline))
  return rule is not None and (base is None or rule <= base)


def summarize(tasks: list[dict]) -> dict:
  """Per baseline: median / geometric-mean speedup and the share of tasks reached; Adam's trials
  to match (median over tasks; ``None`` with ``never_matched`` counting tasks no trial matches)."""
  out = {"primary_baseline": PRIMARY, "num_tasks": len(tasks),
         "rule_diverged_runs": int(sum(t["optimizers"]["rule"]["diverged_seeds"] for t in tasks)),
         "rule_diverged_tasks": int(sum(t["rule_diverged"] for t in tasks)), "vs": {}}
  for name in [n for n in COMPARED if tasks and n in tasks[0]["speedup"]]:
    s = metrics.summarize([t["speedup"][name] for t in tasks])
    s["num_faster"] = int(sum((t["speedup"][name] or 0) > 1 for t in tasks))
    s["num_lower_final_loss"] = int(sum(_rule_not_worse(t, name) for t in tasks))
    out["vs"][name] = s
  trials = np.array([np.inf if t["trials_to_match"] is None else t["trials_to_match"]
                     for t in tasks])
  median = float(np.median(trials)) if len(trials) else None
  out["trials_to_match"] = {"median": median if median is not None and np.isfinite(median)
                            else None, "never_matched": int(np.isinf(trials).sum()),
                            "num_tasks": len(tasks)}
  dist = [t["distribution"]["inside"] for t in tasks]
  out["distribution"] = {"inside": dist.count(True), "outside": dist.count(False),
                         "unknown": dist.count(None)}
  p = out["vs"][PRIMARY]
  out.update({"median_speedup_vs_adam": p["median_speedup"],
              "geomean_speedup_vs_adam": p["geomean_speedup"],
              "reached_fraction_vs_adam": p["reached_fraction"]})
  return out


# -- the meta-training distribution --------------------------------------------------------------


def _meta_training_specs(info: dict) -> list[TaskSpec]:
  try:
    return [TaskSpec.from_dict(dict(d)) for d in info.get("task_specs") or ()]
  except (TypeError, ValueError):
    return []   # recorded by another version: fall back to the suite's design


def classify(item: SuiteTask, suite: str, info: dict) -> dict:
  """Whether a task lies inside the rule's meta-training distribution, and why.

  With the rule's meta-training ``task_specs`` (recorded in its file when known): inside when a
  meta-training task has the same kind and dataset, no smaller widths, depth or ``d_model``, and
  the horizon is at most the meta-training one. Otherwise the suite's design decides.
  """
  train = _meta_training_specs(info)
  if not train:
    inside, why = designed_inside(suite, item)
    return {"inside": inside, "why": why, "by": "suite design"}
  spec, why = item.spec, []
  same_kind = [t for t in train if t.kind == spec.kind]
  same = [t for t in same_kind if t.dataset == spec.dataset]
  if not same_kind:
    why.append(f"kind {spec.kind} was not meta-trained on")
  elif not same:
    why.append(f"dataset {spec.dataset or '(synthetic)'} was not meta-trained on")
  else:
    if max(spec.hidden, default=0) > max(max(t.hidden, default=0) for t in same):
      why.append("wider")
    if len(spec.hidden) > max(len(t.hidden) for t in same):
      why.append("deeper")
    if spec.d_model > max(t.d_model for t in same) or spec.num_layers > max(
        t.num_layers for t in same):
      why.append("larger model")
  horizon = info.get("train_horizon") or info.get("meta_training_horizon")
  if horizon and item.num_steps > max(horizon):
    why.append(f"horizon {item.num_steps} > meta-training's {max(horizon)}")
  return {"inside": not why, "by": "rule's meta-training tasks",
          "why": "; ".join(why) or "kind, data, size and horizon as in meta-training"}


# -- sentences -------------------------------------------------------------------------------------


def speedup_text(x) -> str:
  if x is None:
    return "n/a"
  return "0× (not reached)" if x == 0 else f"{x:.2f}×"


def trials_text(summary: dict) -> str:
  t = summary["trials_to_match"]
  n = t["num_tasks"]
  if t["median"] is None:
    return (f"no random learning-rate trial of Adam matches the rule's final loss on "
            f"{t['never_matched']} of {n} tasks, so the median number of trials is unbounded")
  never = f" (none matches on {t['never_matched']})" if t["never_matched"] else ""
  return (f"Adam needs a median of {t['median']:.2g} random learning-rate trials to match the "
          f"rule's final loss{never}")


def verdict(results: dict) -> str:
  """One plain sentence: did the rule beat tuned Adam on this suite?"""
  s = results["summary"]
  v, n = s["vs"][PRIMARY], s["num_tasks"]
  med = v["median_speedup"]
  beat = med is not None and med > 1
  return (f"**{'Yes' if beat else 'No'}: `{results['optimizer']}` "
          f"{'beat' if beat else 'did not beat'} tuned Adam** on `{results['suite']}`: it reached "
          f"tuned Adam's final training loss on {v['num_reached']} of {n} tasks, faster on "
          f"{v['num_faster']}; median speedup {speedup_text(med)} (beating = median speedup > 1).")


def distribution_sentence(results: dict) -> str:
  """One plain sentence: were the tasks inside the rule's meta-training distribution?"""
  d, n = results["summary"]["distribution"], results["summary"]["num_tasks"]
  tasks = results["tasks"]
  by = tasks[0]["distribution"]["by"] if tasks else "suite design"
  source = ("judged against the meta-training tasks recorded with the rule" if
            by != "suite design" else "the rule does not record its meta-training tasks, so "
            f"judged by the suite's design: meta-training = {META_TRAINING}")
  if d["unknown"] == n:
    return (f"Whether the {n} tasks are inside the rule's meta-training distribution is unknown: "
            f"the rule does not record its meta-training tasks, and suite `{results['suite']}` "
            "is not designed to be inside or outside it.")
  if d["outside"] == n:
    head = f"All {n} tasks are outside the rule's meta-training distribution"
  elif d["inside"] == n:
    head = f"All {n} tasks are inside the rule's meta-training distribution"
  else:
    head = (f"{d['inside']} of {n} tasks are inside the rule's meta-training distribution, "
            f"{d['outside']} outside" + (f", {d['unknown']} unknown" if d["unknown"] else ""))
  return f"{head} ({source})."


def summary_text(results: dict, workdir: str | None = None) -> str:
  """What to print when an evaluation finishes: headline numbers, where the files are, what next."""
  s = results["summary"]
  workdir = workdir or results.get("workdir", ".")
  lines = [f"evaluated {results['optimizer']} on suite {results['suite']}: {s['num_tasks']} tasks"
           f" x {results['seeds']} seeds" + ("" if results.get("complete") else " (incomplete)")]
  for name in [n for n in COMPARED if n in s["vs"]]:
    v = s["vs"][name]
    tuned = "" if name == DEFAULT.name else "tuned "
    lines.append(f"  vs {tuned}{LABELS[name]}: reached its final loss on {v['num_reached']}/"
                 f"{v['num_tasks']} tasks, median speedup {speedup_text(v['median_speedup'])}")
  lines += [f"  {trials_text(s)}.",
            "  " + verdict(results).replace("**", "").replace("`", ""),
            "  " + distribution_sentence(results),
            f"results: {os.path.join(workdir, 'results.json')}",
            f"next: metalearn report {workdir}   (writes {os.path.join(workdir, 'report.md')} "
            "and plots/)"]
  return "\n".join(lines)
