"""``meta_optimizer="proven"``: a rule must earn the job of meta-optimizer (self_improve.py).

Each generation a random half of the members (``split_members``) is trained by the incumbent,
the other half by the challenger: the best member of the previous generation whose rule is not
the incumbent's (its best if that differs, else the runner-up). The rule whose half gained more
mean fitness over the generation (start minus kept fitness, ``proven_winner``) is the next
incumbent. Generation 0's best is the first incumbent, its runner-up the first challenger. A
rule that trains small nets well is not always one that trains rules well; this keeps the one
that does, and always tries another.

All on the host; the state (two rules and their lineage ids) is checkpointed by the loop.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from metalearn.meta.selection import member_score


def split_members(size: int, seed: int, generation: int) -> np.ndarray:
  """[P] int32: 1 for a random half of the members (trained by the challenger), 0 for the rest
  (the incumbent). Drawn from (seed, generation), so it never depends on the device count."""
  which = np.zeros(size, np.int32)
  which[np.random.default_rng([seed, 3, generation]).permutation(size)[:size // 2]] = 1
  return which


def proven_winner(gain, which) -> bool:
  """Whether the challenger (``which == 1``) trained its half to a higher mean fitness gain
  ([P] start minus kept fitness; a non-finite gain, a member whose training diverged, counts as
  the lowest finite one) than the incumbent's half. Ties, and a generation without a
  challenger, keep the incumbent."""
  gain = np.asarray(gain, np.float64)
  finite = np.isfinite(gain)
  gain = np.where(finite, gain, gain[finite].min() if finite.any() else 0.0)
  which = np.asarray(which)
  if not (which == 1).any() or not (which == 0).any():
    return False
  return bool(gain[which == 1].mean() > gain[which == 0].mean())


def same_theta(a, b) -> bool:
  """Whether two rules' meta-parameters are the same tree of the same arrays (value for value)."""
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return (jax.tree.structure(a) == jax.tree.structure(b)
          and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb)))


@dataclasses.dataclass
class Contest:
  """The incumbent and the challenger: their meta-parameters (host arrays) and lineage ids
  (``{"generation", "member"}``)."""
  incumbent: object = None
  incumbent_id: dict | None = None
  challenger: object = None
  challenger_id: dict | None = None

  def plan(self, size: int, seed: int, generation: int):
    """(stacked rules [2, ...], [P] which rule trains each member, [P] trained_by ids)."""
    split = not same_theta(self.incumbent, self.challenger)
    which = split_members(size, seed, generation) if split else np.zeros(size, np.int32)
    stacked = jax.tree.map(lambda a, b: np.stack([np.asarray(a), np.asarray(b)]),
                           self.incumbent, self.challenger)
    return stacked, which, [self.challenger_id if w else self.incumbent_id for w in which]

  def settle(self, gain, which) -> None:
    """After a generation: the challenger becomes the incumbent if its half gained more."""
    if proven_winner(gain, which):
      self.incumbent, self.incumbent_id = self.challenger, self.challenger_id

  def next_challenger(self, generation: int, task_fitness, thetas, by: str = "mean") -> None:
    """From generation ``generation``'s members ([P, T] fitness, [P, ...] thetas, before PBT):
    the first incumbent is its best (generation 0), and the challenger its best member whose
    rule is not the incumbent's (the incumbent itself if every member has its rule)."""
    thetas = jax.tree.map(np.asarray, thetas)
    member = lambda i: jax.tree.map(lambda x: x[i], thetas)
    order = np.argsort(member_score(task_fitness, by), kind="stable")
    if self.incumbent is None:
      self.incumbent = member(int(order[0]))
      self.incumbent_id = {"generation": generation, "member": int(order[0])}
    self.challenger, self.challenger_id = self.incumbent, self.incumbent_id
    for i in order:
      if not same_theta(member(int(i)), self.incumbent):
        self.challenger = member(int(i))
        self.challenger_id = {"generation": generation, "member": int(i)}
        break

  def state(self) -> dict:
    """What the checkpoint holds (the ids go into the lineage: ``records``)."""
    return {"incumbent_theta": self.incumbent, "challenger_theta": self.challenger}

  def records(self) -> dict:
    return {"meta_optimizer_next": self.incumbent_id, "challenger_next": self.challenger_id}

  @classmethod
  def restore(cls, state: dict, record: dict) -> "Contest":
    """From a checkpoint's state and the last generation's lineage record."""
    host = lambda t: jax.tree.map(np.asarray, t)
    return cls(host(state["incumbent_theta"]), record["meta_optimizer_next"],
               host(state["challenger_theta"]), record["challenger_next"])
