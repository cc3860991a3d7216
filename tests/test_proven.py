"""meta_optimizer="proven": the incumbent meta-optimizer and the challenger (the previous
generation's best member whose rule is not the incumbent's) each train half the population; the
half that gains more names the next incumbent (metalearn.meta.proven, self_improve)."""
import json
import os

import jax
import numpy as np
import pytest

import metalearn.parallel as parallel
from metalearn.meta import self_improve as si
from metalearn.meta.population import Population
from metalearn.meta.proven import Contest, proven_winner, same_theta, split_members
from self_improve_helpers import tiny_config


def lineage(workdir):
  with open(os.path.join(workdir, si.LINEAGE)) as f:
    return [json.loads(line) for line in f]


def test_split_is_half_and_replayable_and_the_winner_is_the_higher_mean_gain():
  which = split_members(8, seed=0, generation=2)
  assert which.sum() == 4 and set(which) == {0, 1}
  assert np.array_equal(which, split_members(8, seed=0, generation=2))
  assert not np.array_equal(which, split_members(8, seed=0, generation=3))
  which = np.array([0, 1, 0, 1])
  assert proven_winner(np.array([0.1, 0.3, 0.1, 0.0]), which)          # 0.15 > 0.1
  assert not proven_winner(np.array([0.2, 0.3, 0.2, 0.1]), which)      # 0.2 == 0.2: a tie stays
  # A diverged member's NaN counts as the lowest finite gain (-0.3): 0.1 vs 0.1, a tie.
  assert not proven_winner(np.array([0.3, 0.6, 0.3, np.nan, -0.3, 0.0]), np.array([0, 1] * 3))
  assert not proven_winner(np.array([0.0, 9.0, 0.0, 9.0]), np.zeros(4, int))   # no challenger
  a = {"w": np.ones(3)}
  assert same_theta(a, {"w": np.ones(3)}) and not same_theta(a, {"w": np.array([1.0, 1, 2])})


def test_each_member_is_trained_by_the_rule_it_was_given():
  """One step with two rules stacked and a per-member index gives each member exactly what a step
  with its own rule alone gives it (members never interact)."""
  pop = Population(tiny_config(population_size=4), parallel.make_mesh(2))
  members = pop.init_members()
  thetas = [pop.member_theta(members, i) for i in (0, 1)]
  stacked = jax.tree.map(lambda a, b: np.stack([a, b]), *thetas)
  copy = lambda m: jax.tree.map(lambda a: np.array(a), jax.device_get(m))
  start = copy(members)
  which = np.array([1, 0, 0, 1], np.int32)
  split, _ = pop.step(jax.device_put(start, pop._pop), stacked, 0, which)
  alone = [pop.step(jax.device_put(start, pop._pop), thetas[k], 0)[0] for k in (0, 1)]
  split, alone = jax.device_get(split["theta"]), [jax.device_get(a["theta"]) for a in alone]
  for i, k in enumerate(which):
    for a, b in zip(jax.tree.leaves(split), jax.tree.leaves(alone[k])):
      np.testing.assert_allclose(a[i], b[i], rtol=1e-6, atol=1e-7)
  a0, a1 = (jax.tree.leaves(a) for a in alone)
  assert any(not np.allclose(x[0], y[0]) for x, y in zip(a0, a1))   # the two rules do differ


def test_proven_lineage_follows_the_rule_and_resumes_exactly(tmp_path):
  cfg = dict(meta_optimizer="proven", population_size=4, exploit_fraction=0.25)
  mesh = parallel.make_mesh(2)
  whole = str(tmp_path / "whole")
  si.self_improve(tiny_config(num_generations=3, **cfg), whole, mesh=mesh)
  recs = lineage(whole)
  gens = {g: [r for r in recs if r["generation"] == g] for g in range(4)}
  best = {g: next(r for r in rs if r["best"]) for g, rs in gens.items()}
  ident = lambda r: {"generation": r["generation"], "member": r["member"]}
  assert all(r["meta_optimizer_next"] == ident(best[0]) for r in gens[0])   # the first incumbent
  for g in (1, 2, 3):
    incumbent = gens[g - 1][0]["meta_optimizer_next"]
    challenger = gens[g - 1][0]["challenger_next"]
    assert challenger["generation"] == g - 1 and challenger != incumbent
    by = [r["trained_by"] for r in gens[g]]
    assert by.count(challenger) == 2 and by.count(incumbent) == 2   # half and half
    gain = lambda who: np.mean([r["meta_gain"] for r in gens[g] if r["trained_by"] == who])
    expect = challenger if gain(challenger) > gain(incumbent) else incumbent
    assert all(r["meta_optimizer_next"] == expect for r in gens[g])
    # The challenger is generation g-1's best, or its runner-up where the best has the
    # incumbent's rule (test_the_challenger_is_... checks the rule itself).
    ranked = sorted(gens[g - 1], key=lambda r: (r["fitness"], r["member"]))
    assert challenger in [ident(r) for r in ranked[:2]]
  # Killed after generation 1 and rerun: the same lineage, incumbent included.
  part = str(tmp_path / "part")
  si.self_improve(tiny_config(num_generations=1, **cfg), part, mesh=mesh)
  si.self_improve(tiny_config(num_generations=3, **cfg), part, mesh=mesh)
  assert lineage(part) == recs
  from metalearn.evaluate import generations
  text = open(generations.write_generations_report(whole, evaluate=False)).read()
  assert " vs challenger gen " in text and "| incumbent gen " in text and "; next: gen " in text


def test_the_challenger_is_the_best_member_whose_rule_differs_from_the_incumbent():
  thetas = {"w": np.array([[1.0], [2.0], [1.0], [3.0]])}   # members 0 and 2 share a rule
  fit = np.array([[-1.0], [-0.5], [-2.0], [-0.7]])
  c = Contest()
  c.next_challenger(0, fit, thetas)
  assert c.incumbent_id == {"generation": 0, "member": 2}
  assert c.challenger_id == {"generation": 0, "member": 3}   # member 0 has the incumbent's rule
  stacked, which, by = c.plan(4, seed=0, generation=1)
  assert stacked["w"].shape == (2, 1) and which.sum() == 2
  assert by == [c.challenger_id if w else c.incumbent_id for w in which]
  c.settle(np.where(which == 1, 1.0, 0.0), which)   # the challenger's half gained more
  assert c.incumbent_id == {"generation": 0, "member": 3}
  same = Contest()
  same.next_challenger(0, fit, {"w": np.ones((4, 1))})   # one rule everywhere: no split
  assert same.challenger_id == same.incumbent_id
  assert not same.plan(4, 0, 1)[1].any()
