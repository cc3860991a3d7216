"""How self-improvement judges members (``metalearn.meta.self_improve``): which keep a
generation's training (``accepted_members``), which point of a generation a member keeps
(``Kept``, with ``accept_every``), how members are ordered (``member_score``), and which member
is a generation's best (``best_member``; ``best_of`` and ``elite_of`` read it back from the
lineage).
All on the host, from [P, T] task fitness (lower is better; non-finite counts as worst).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np


def accepted_members(start, new, mode: str) -> np.ndarray:
  """[P] bool: which members keep a generation's training, from [P, T] task fitness at its start
  and end (lower is better; non-finite counts as worst). ``"improved"``: the mean over tasks went
  down; ``"improved_all"``: it went down and no task went up."""
  start, new = np.nan_to_num(start, nan=np.inf), np.nan_to_num(new, nan=np.inf)
  ok = new.mean(axis=1) < start.mean(axis=1)
  if mode == "improved_all":
    ok &= np.all(new <= start, axis=1)
  return ok


@dataclasses.dataclass
class Kept:
  """Each member's best point of the current generation so far: the state to go back to
  (``Population.restore_point``), its [P, T] task fitness, and the outer step within the
  generation it was reached at (0: the start, whose fitness ``start`` is)."""
  point: dict
  fitness: np.ndarray
  step: np.ndarray
  start: np.ndarray

  def better(self, now: np.ndarray, mode: str) -> np.ndarray:
    """[P] whether ``now`` (task fitness) is accepted against the start (``accepted_members``)
    and has a lower mean than the point kept so far."""
    return accepted_members(self.start, now, mode) & (now.mean(axis=1) < self.fitness.mean(axis=1))

  def update(self, pop, members, mode: str, step: int, now=None) -> "Kept":
    """The kept points after a check at ``step`` (``now``: the members' [P, T] task fitness
    there, measured if not given)."""
    now = pop.task_fitness(members["theta"]) if now is None else now
    better = self.better(now, mode)
    if not better.any():
      return self
    pick = lambda a, b: np.where(better.reshape((-1,) + (1,) * (np.ndim(a) - 1)), b, a)
    point = jax.tree.map(pick, self.point, pop.restore_point(members))
    return Kept(point, pick(self.fitness, now), np.where(better, step, self.step), self.start)

  def finish(self, pop, members, fitness: np.ndarray, mode: str, steps: int):
    """At the end of a generation (``steps`` outer steps; ``fitness`` the end's): members whose
    end is not better go back to their kept point (``Population.keep_improved``). Returns
    (members, [P, T] fitness of what each member kept, [P] the step it was reached at)."""
    end = self.better(fitness, mode)
    members = pop.keep_improved(self.point, members, end)
    return (members, np.where(end[:, None], fitness, self.fitness),
            np.where(end, steps, self.step))


def no_worse(task_fitness, previous_best, tolerance: float = 0.0) -> np.ndarray:
  """[P] bool: which members are no worse than ``previous_best`` ([T] task fitness) on any task,
  up to ``tolerance`` (a member may be up to that much worse on a task; non-finite is worse)."""
  tf = np.nan_to_num(np.asarray(task_fitness, np.float64), nan=np.inf, posinf=np.inf)
  return np.all(tf <= np.asarray(previous_best, np.float64) + tolerance, axis=1)


def passing_members(task_fitness, previous_best, margin: float = 0.0,
                    tolerance: float = 0.0) -> np.ndarray:
  """[P] bool: which members pass the previous generation's best ([T] task fitness): no worse on
  any meta-validation task (``no_worse``, up to ``tolerance``), and a mean lower by more than
  ``margin`` (so the previous best itself never passes; non-finite never passes).
  With ``generation_end="passed"`` a generation ends as soon as one does."""
  tf = np.nan_to_num(np.asarray(task_fitness, np.float64), nan=np.inf, posinf=np.inf)
  prev = np.asarray(previous_best, np.float64)
  return no_worse(tf, prev, tolerance) & (tf.mean(axis=1) < prev.mean() - margin)


def best_of(lineage: list, generation: int) -> dict:
  """The lineage record of ``generation``'s best member."""
  return next(r for r in lineage if r["generation"] == generation and r["best"])


def elite_of(lineage: list, generation: int) -> dict:
  """The best generation-best record up to ``generation`` (the earliest of equals; NaN last)."""
  bests = [r for r in lineage if r["generation"] <= generation and r["best"]]
  key = lambda r: (r["fitness"] if np.isfinite(r["fitness"]) else np.inf, r["generation"])
  return min(bests, key=key)


def rank_score(task_fitness) -> np.ndarray:
  """[P] each member's mean over tasks of its rank within the population on that task (0: the
  lowest fitness; equal values share their mean rank; non-finite ranks last). Scale-free: a task
  whose fitness spreads widely (a loss driven to zero on a small table) counts no more than one
  whose fitness barely moves."""
  tf = np.nan_to_num(np.asarray(task_fitness, np.float64), nan=np.inf, posinf=np.inf)
  below = (tf[None] < tf[:, None]).sum(axis=1)    # [P, T]: members lower on each task
  equal = (tf[None] == tf[:, None]).sum(axis=1)   # ... and equal (itself included)
  return (below + (equal - 1) / 2).mean(axis=1)


def member_score(task_fitness, by: str = "mean") -> np.ndarray:
  """[P] the score members are ordered by (lower is better; non-finite last): the mean fitness
  over tasks, or with ``by="rank"`` the mean per-task rank (``rank_score``; ties broken by the
  mean). PBT's exploit and the generation's best both use it."""
  tf = np.asarray(task_fitness, np.float64)
  mean = tf.mean(axis=1)
  mean = np.where(np.isfinite(mean), mean, np.inf)
  if by != "rank":
    return mean
  finite = mean[np.isfinite(mean)]
  spread = (finite.max() - finite.min()) if finite.size else 0.0
  tie = (mean - (finite.min() if finite.size else 0.0)) / (spread + 1.0) * 1e-3
  return rank_score(tf) + np.where(np.isfinite(tie), tie, 1.0)


def best_member(task_fitness, previous_best=None, by: str = "mean",
                tolerance: float = 0.0) -> int:
  """The generation's best member from [P, T] task fitness: the lowest finite mean; with
  ``by="rank"`` the lowest mean per-task rank within the population (``rank_score``); with
  ``by="dominant"`` and the previous generation's best's [T] task fitness, the lowest mean among
  the members no worse than it on any task, up to ``tolerance`` (``no_worse``; the previous
  best itself, kept by elitism, is always one; if none is, the lowest mean)."""
  score = member_score(task_fitness, by)
  if by == "dominant" and previous_best is not None:
    ok = no_worse(task_fitness, previous_best, tolerance)
    if ok.any():
      score = np.where(ok, score, np.inf)
  return int(np.argmin(score))
