"""Self-improvement (metalearn.meta.self_improve): rules meta-training rules, PBT, resume, sharding."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metalearn.artifacts as artifacts
import metalearn.parallel as parallel
from metalearn.meta import self_improve as si
from metalearn.meta.population import Population
from self_improve_helpers import TRAIN, VALID, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def lineage(workdir):
  with open(os.path.join(workdir, si.LINEAGE)) as f:
    return [json.loads(line) for line in f]


@pytest.mark.parametrize("change, message", [
    ({"eval_tasks": ()}, "eval_tasks"),
    ({"eval_tasks": TRAIN}, "must not be meta-training tasks"),
    ({"population_size": 3}, "does not divide over 2 devices"),
    ({"meta_optimizer": "sgd"}, "meta_optimizer must be one of"),
    ({"init": "zeros"}, "init must be one of"),
    ({"meta_optimizer_horizon": -1}, "meta_optimizer_horizon must be an integer >= 0"),
    ({"accept": "best"}, "accept must be one of"),
    ({"meta_step_scale": (1.0, 0.1)}, "meta_step_scale must be"),
    ({"accept_every": -1}, "accept_every must be an integer >= 0"),
    ({"best_by": "median"}, "best_by must be one of"),
    ({"generation_end": "improved"}, "generation_end must be one of"),
    ({"generation_end": "passed"}, "needs accept_every > 0"),
    ({"generation_min_steps": 5}, r"generation_min_steps must be an integer in \[0, "),
    ({"pass_margin": -0.1}, "pass_margin must be a number >= 0"),
    ({"fitness_floor": 2.0}, "fitness_floor must be a number <= 0"),
    ({"dominance_tolerance": -1.0}, "dominance_tolerance must be a number >= 0"),
    ({"meta_optimizer_rule_kwargs": {"bogus": 1}}, "meta_optimizer_rule_kwargs=.*unexpected"),
    ({"rule": "scaled_lopt", "meta_optimizer_rule_kwargs": {"hidden_size": 8}},
     "changes rule 'scaled_lopt''s meta-parameters"),
])
def test_bad_config_is_rejected_with_the_fix(change, message, tmp_path):
  with pytest.raises(ValueError, match=message):
    si.self_improve(tiny_config(**change), str(tmp_path), mesh=parallel.make_mesh(2))
  assert not os.listdir(tmp_path)  # nothing written


def test_parents_bottom_quantile_copies_top_quantile():
  pop = Population(tiny_config(population_size=8, exploit_fraction=0.25), parallel.make_mesh(2))
  fitness = np.array([0.5, -1.0, 2.0, 0.1, np.nan, -0.5, 0.3, 0.0])
  parents = pop.parents(fitness, generation=3)
  bottom, top = {4, 2}, {1, 5}     # NaN ranks last
  assert {i for i in range(8) if parents[i] != i} == bottom
  assert all(parents[i] in top for i in bottom)
  assert np.array_equal(parents, pop.parents(fitness, generation=3))   # replayable


def test_exploit_copies_theta_and_meta_optimizer_state_then_perturbs():
  pop = Population(tiny_config(population_size=4, explore_sigma=0.1), parallel.make_mesh(2))
  members = pop.init_members()
  before = jax.device_get(members)
  parents = np.array([0, 1, 0, 1])
  after = jax.device_get(pop.exploit_explore(members, parents, generation=0))
  for i, p in enumerate(parents):
    for a, b in zip(jax.tree.leaves(after["outer_state"]), jax.tree.leaves(before["outer_state"])):
      np.testing.assert_array_equal(a[i], b[p])
    for a, b in zip(jax.tree.leaves(after["theta"]), jax.tree.leaves(before["theta"])):
      if i == p:
        np.testing.assert_array_equal(a[i], b[i])
      else:
        assert 0 < np.max(np.abs(a[i] - b[p])) < 1.0


def test_meta_optimizer_rule_kwargs_change_only_the_rule_that_meta_trains(tmp_path):
  """A ScaledLOpt member's theta as the meta-optimizer with ``{"relative": False}``: the outer
  update is that rule's, on the same meta-parameters; the members' own rule is unchanged. Set from
  the command line as ``--config.meta_optimizer_rule_kwargs.relative=False``."""
  from metalearn.meta import config as config_lib
  from metalearn.optimizers import make_rule
  config = tiny_config(rule="scaled_lopt", meta_optimizer="best")
  config_lib.apply_flags(config, ["meta_optimizer_rule_kwargs.relative=False"])
  assert config.meta_optimizer_rule_kwargs.relative is False
  si.validate(config, 2)
  mesh = parallel.make_mesh(2)
  pop, plain_pop = Population(config, mesh), Population(tiny_config(rule="scaled_lopt"), mesh)
  assert pop.rule == plain_pop.rule and pop.outer_rule == make_rule("scaled_lopt", relative=False)
  key = jax.random.key(3)
  theta = jax.tree.map(lambda a: a + 2.0, pop.rule.init_meta_params(key))   # rms(theta) >> 1
  grad = jax.tree.map(jnp.ones_like, theta)
  step = lambda tx: tx.update(grad, tx.init(theta), theta)[0]
  ours, relative = step(pop.outer_tx(theta)), step(plain_pop.outer_tx(theta))
  clip = optax.clip_by_global_norm(config.outer_grad_clip)
  by_hand = step(optax.chain(clip, make_rule("scaled_lopt", relative=False).as_optax(
      theta, num_steps=pop.outer_horizon)))
  for a, b, c in zip(*(jax.tree.leaves(t) for t in (ours, by_hand, relative))):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  assert any(np.max(np.abs(c)) > 1.5 * np.max(np.abs(a)) for a, c in
             zip(jax.tree.leaves(ours), jax.tree.leaves(relative)))   # RMS-relative: larger


def test_meta_optimizer_horizon_restarts_the_meta_optimizer_state():
  mesh = parallel.make_mesh(2)
  cfg = dict(population_size=2, meta_optimizer="own", num_generations=3, generation_steps=4)
  pop = Population(tiny_config(meta_optimizer_horizon=2, **cfg), mesh)
  whole = Population(tiny_config(**cfg), mesh)
  assert (pop.outer_horizon, whole.outer_horizon) == (2, 12)
  assert [s for s in range(9) if pop.restarts_outer_state(s)] == [2, 4, 6, 8]
  assert not any(whole.restarts_outer_state(s) for s in range(9))
  assert not Population(tiny_config(meta_optimizer_horizon=2, **{**cfg, "meta_optimizer": "adam"}),
                        mesh).restarts_outer_state(2)
  members = pop.step(pop.init_members(), None, 0)[0]
  members = pop.step(members, None, 1)[0]
  copy = lambda m: jax.tree.map(lambda a: a.copy(), m)
  fresh = jax.jit(jax.vmap(lambda th: pop.outer_tx(th).init(th)))(members["theta"])
  assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in
             zip(jax.tree.leaves(members["outer_state"]), jax.tree.leaves(fresh)))
  reset_by_hand = {**copy(members), "outer_state": fresh}
  kept = jax.device_get(whole.step(copy(members), None, 2)[0])
  by_hand = jax.device_get(whole.step(reset_by_hand, None, 2)[0])
  restarted = jax.device_get(pop.step(copy(members), None, 2)[0])
  for a, b in zip(jax.tree.leaves(restarted["theta"]), jax.tree.leaves(by_hand["theta"])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert any(np.any(a != b) for a, b in
             zip(jax.tree.leaves(restarted["theta"]), jax.tree.leaves(kept["theta"])))


def test_accept_improved_never_lets_a_member_get_worse(tmp_path):
  wd = str(tmp_path / "acc")
  mesh = parallel.make_mesh(2)
  r = si.self_improve(tiny_config(accept="improved", num_generations=3, population_size=4,
                                  meta_optimizer="own"), wd, mesh=mesh)
  recs = lineage(wd)
  by = {(x["generation"], x["member"]): x for x in recs}
  assert all("accepted" in x for x in recs if x["generation"] > 0)
  for g in range(1, 4):
    for m in range(4):
      x = by[(g, m)]
      if not x["accepted"]:
        # Went back to its start: the start's theta is its parent's (perturbed if copied), and
        # the recorded fitness is the start's, which the members it was copied from bound only
        # when it was not perturbed.
        if x["parent"] == m:
          assert x["fitness"] == pytest.approx(by[(g - 1, m)]["fitness"], rel=1e-5, abs=1e-6)
      else:
        assert np.isfinite(x["fitness"])
  # Unperturbed members never get worse.
  for g in range(1, 4):
    for m in range(4):
      if by[(g, m)]["parent"] == m:
        assert by[(g, m)]["fitness"] <= by[(g - 1, m)]["fitness"] + 1e-6
  assert r.generation == 3


def test_accept_improved_all_keeps_every_task_from_getting_worse(tmp_path):
  """Two meta-validation tasks: an accepted member is no worse on either; the lineage records
  each task's fitness, and their mean is the fitness."""
  wd = str(tmp_path / "all")
  valid = VALID + ({"kind": "quadratic", "dim": 5, "seed": 4, "batch_size": 4},)
  si.self_improve(tiny_config(accept="improved_all", num_generations=3, population_size=4,
                              meta_optimizer="own", eval_tasks=valid), wd,
                  mesh=parallel.make_mesh(2))
  recs = lineage(wd)
  by = {(x["generation"], x["member"]): x for x in recs}
  assert all(len(x["task_fitness"]) == 2 for x in recs)
  for x in recs:
    assert x["fitness"] == pytest.approx(np.mean(x["task_fitness"]), rel=1e-6, abs=1e-9)
  for g in range(1, 4):
    for m in range(4):
      x = by[(g, m)]
      if x["parent"] == m:   # unperturbed: its start is its previous record
        prev = by[(g - 1, m)]["task_fitness"]
        assert all(a <= b + 1e-6 for a, b in zip(x["task_fitness"], prev))


@pytest.mark.parametrize("mode", ["improved", "improved_all"])
def test_accept_every_keeps_the_best_point_of_a_generation(mode, tmp_path):
  """Fitness checked inside a generation: a member keeps the best accepted point of its
  trajectory. A meta-optimizer that overshoots (Adam at a large outer rate) improves a rule in
  its first steps and spoils it later, so some members keep a point inside the generation; the
  fitness recorded is the kept rule's own, and no member ever gets worse (on any task, with
  ``improved_all``)."""
  wd = str(tmp_path / "every")
  mesh = parallel.make_mesh(2)
  valid = VALID + ({"kind": "quadratic", "dim": 5, "seed": 4, "batch_size": 4},)
  config = tiny_config(accept=mode, accept_every=1, generation_steps=6, num_generations=3,
                       population_size=4, meta_optimizer="adam", outer_lr=0.3, eval_tasks=valid)
  si.self_improve(config, wd, mesh=mesh)
  recs = lineage(wd)
  by = {(x["generation"], x["member"]): x for x in recs}
  kept = [x["kept_step"] for x in recs if x["generation"] > 0]
  assert all(0 <= k <= 6 for k in kept)
  assert any(0 < k < 6 for k in kept), kept   # a point inside a generation was kept
  for x in recs:
    if x["generation"] > 0:
      assert x["accepted"] == (x["kept_step"] > 0)
      if x["parent"] == x["member"]:   # unperturbed: its start is its previous record
        prev = by[(x["generation"] - 1, x["member"])]
        assert x["fitness"] <= prev["fitness"] + 1e-6
        if mode == "improved_all":
          assert all(a <= b + 1e-6 for a, b in zip(x["task_fitness"], prev["task_fitness"]))
  # The generation files hold the kept rules: re-measured, their fitness is the recorded one.
  pop = Population(config, mesh)
  for g in range(1, 4):
    best = next(x for x in recs if x["generation"] == g and x["best"])
    _, theta, _ = artifacts.resolve(si.generation_file(wd, g))
    stacked = jax.tree.map(lambda a: np.stack([np.asarray(a)] * 4), theta)
    np.testing.assert_allclose(pop.task_fitness(stacked)[0], best["task_fitness"], rtol=1e-5,
                               atol=1e-6)


def test_best_by_rank_orders_the_best_and_pbt(tmp_path):
  wd = str(tmp_path / "rank")
  valid = VALID + ({"kind": "quadratic", "dim": 5, "seed": 4, "batch_size": 4},)
  si.self_improve(tiny_config(best_by="rank", num_generations=2, population_size=4,
                              exploit_fraction=0.25, eval_tasks=valid, explore_sigma=0.5), wd,
                  mesh=parallel.make_mesh(2))
  recs = lineage(wd)
  for g in (0, 1, 2):
    gen = sorted((x for x in recs if x["generation"] == g), key=lambda x: x["member"])
    tf = np.array([x["task_fitness"] for x in gen])
    order = np.argsort(si.member_score(tf, "rank"), kind="stable")
    assert [x["member"] for x in gen if x["best"]] == [int(order[0])]
    copied = {x["member"] for x in gen if x["parent_next"] != x["member"]}
    assert copied == {int(order[-1])}                 # the bottom quarter (1 of 4) by rank
    assert all(gen[m]["parent_next"] == int(order[0]) for m in copied)   # copies the top one


def test_best_by_dominant_never_hands_on_a_rule_worse_on_a_task(tmp_path):
  """With acceptance the previous best is kept, so each generation's best is no worse than the
  previous one on every meta-validation task, and it is the rule that trains the next."""
  wd = str(tmp_path / "dom")
  valid = VALID + ({"kind": "quadratic", "dim": 5, "seed": 4, "batch_size": 4},)
  si.self_improve(tiny_config(accept="improved_all", best_by="dominant", num_generations=3,
                              population_size=4, eval_tasks=valid, explore_sigma=0.5), wd,
                  mesh=parallel.make_mesh(2))
  recs = lineage(wd)
  bests = {x["generation"]: x for x in recs if x["best"]}
  assert sorted(bests) == [0, 1, 2, 3]
  for g in (1, 2, 3):
    assert all(a <= b + 1e-6 for a, b in zip(bests[g]["task_fitness"],
                                              bests[g - 1]["task_fitness"]))
    assert all(x["trained_by"] == {"generation": g - 1, "member": bests[g - 1]["member"]}
               for x in recs if x["generation"] == g)


def test_generation_ends_at_the_first_check_where_a_member_passes(tmp_path):
  """``generation_end="passed"``: a generation ends at the first check (from
  ``generation_min_steps`` on) where a member's kept point passes the previous best, and it is
  then the same generation as a fixed one of that length; one check earlier, none passed."""
  mesh = parallel.make_mesh(2)
  valid = VALID + ({"kind": "quadratic", "dim": 5, "seed": 4, "batch_size": 4},)
  base = dict(accept="improved_all", accept_every=1, generation_steps=8, population_size=4,
              meta_optimizer="adam", outer_lr=0.1, eval_tasks=valid, best_by="dominant")
  wd = str(tmp_path / "passed")
  si.self_improve(tiny_config(generation_end="passed", generation_min_steps=2, num_generations=3,
                              **base), wd, mesh=mesh)
  recs = lineage(wd)
  gens = {g: [x for x in recs if x["generation"] == g] for g in range(4)}
  steps = {g: gens[g][0]["steps"] for g in (1, 2, 3)}
  assert all(2 <= s <= 8 for s in steps.values()) and min(steps.values()) < 8, steps
  for g in (1, 2, 3):
    prev = next(x for x in gens[g - 1] if x["best"])["task_fitness"]
    tf = np.array([x["task_fitness"] for x in gens[g]])
    if steps[g] < 8:   # it ended early: a member passed, and the best (dominant) is one
      assert si.passing_members(tf, prev).any()
      best = next(x for x in gens[g] if x["best"])
      assert si.passing_members(np.array([best["task_fitness"]]), prev)[0]
  from metalearn.evaluate import generations
  text = open(generations.write_generations_report(wd, evaluate=False)).read()
  assert "a generation ends when a member passes the previous best" in text
  assert all(f"| {g} | {steps[g]} | " in text for g in (1, 2, 3))
  for g in (1, 2, 3):   # the members that kept a point of their training, per generation
    kept = sum(x["accepted"] for x in gens[g])
    assert f" | {kept}/4 | " in text.split(f"\n| {g} | {steps[g]} | ")[1].split("\n")[0]
  # Generation 1 is the fixed generation of that length; one step shorter, no member passed.
  s = steps[1]
  for n, passes in ((s, True), (s - 1, False)):
    if n < 2:
      continue
    fixed = str(tmp_path / f"fixed{n}")
    si.self_improve(tiny_config(num_generations=1, **{**base, "generation_steps": n}), fixed,
                    mesh=mesh)
    g1 = [x for x in lineage(fixed) if x["generation"] == 1]
    prev = next(x for x in gens[0] if x["best"])["task_fitness"]
    tf = np.array([x["task_fitness"] for x in g1])
    assert si.passing_members(tf, prev).any() == passes
    if n == s:
      np.testing.assert_allclose(tf, [x["task_fitness"] for x in gens[1]], rtol=1e-5, atol=1e-6)
      assert [x["kept_step"] for x in g1] == [x["kept_step"] for x in gens[1]]


def test_same_rule_tells_a_tie_from_a_new_best(tmp_path):
  """The report counts generations whose best rule stayed (a tie) apart from new bests."""
  import shutil
  from metalearn.evaluate import generations
  wd = str(tmp_path / "same")
  si.self_improve(tiny_config(num_generations=2, population_size=4, explore_sigma=0.5), wd,
                  mesh=parallel.make_mesh(2))
  assert generations.same_rule(wd, 1, 1)
  assert not generations.same_rule(wd, 0, 1)   # accept="always": every member's theta moved
  shutil.copy(si.generation_file(wd, 1), si.generation_file(wd, 2))
  assert generations.same_rule(wd, 1, 2)


def test_accept_every_needs_acceptance(tmp_path):
  with pytest.raises(ValueError, match="accept_every=2 keeps the best accepted point"):
    si.self_improve(tiny_config(accept_every=2), str(tmp_path), mesh=parallel.make_mesh(2))
  assert not os.listdir(tmp_path)


def test_meta_step_scale_is_per_member_copied_and_perturbed_by_pbt(tmp_path):
  wd = str(tmp_path / "ms")
  r = si.self_improve(tiny_config(meta_step_scale=(0.1, 1.0), num_generations=2,
                                  population_size=4, meta_optimizer="own"), wd,
                      mesh=parallel.make_mesh(2))
  recs = lineage(wd)
  by = {(x["generation"], x["member"]): x for x in recs}
  steps0 = [by[(0, m)]["meta_step"] for m in range(4)]
  assert all(0.1 <= s <= 1.0 for s in steps0) and len(set(steps0)) == 4
  for g in (1, 2):
    for m in range(4):
      x, parent = by[(g, m)], by[(g - 1, by[(g, m)]["parent"])]
      ratio = x["meta_step"] / parent["meta_step"]
      if x["parent"] == m:
        assert ratio == pytest.approx(1.0, rel=1e-6)
      else:   # copied at the exploit, then perturbed by 1.25 either way
        assert ratio == pytest.approx(1.25, rel=1e-5) or ratio == pytest.approx(0.8, rel=1e-5)
  assert r.generation == 2


def test_meta_step_scale_scales_the_meta_optimizer_steps(tmp_path):
  """A tiny multiplier leaves theta almost where it started; the default moves it."""
  mesh = parallel.make_mesh(2)
  moved = {}
  for name, scale in (("one", (1.0, 1.0)), ("tiny", (1e-6, 1e-6))):
    c = tiny_config(meta_step_scale=scale, num_generations=1, meta_optimizer="adam",
                    outer_lr=0.1, exploit_fraction=0.5, explore_sigma=0.0)
    pop = Population(c, mesh)
    members = pop.init_members()
    start = jax.device_get(members["theta"])
    for step in range(3):
      members, _ = pop.step(members, None, step)
    end = jax.device_get(members["theta"])
    moved[name] = max(float(np.max(np.abs(a - b)))
                      for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(end)))
  assert moved["one"] > 1e-3
  assert moved["tiny"] < 1e-6 * moved["one"] * 10


def test_run_of_an_older_version_resumes_after_an_upgrade(tmp_path):
  """A workdir written before ``meta_optimizer_horizon`` existed resumes at its default (0)."""
  wd = str(tmp_path / "old")
  mesh = parallel.make_mesh(2)
  si.self_improve(tiny_config(num_generations=1), wd, mesh=mesh)
  metas = list((tmp_path / "old" / artifacts.CHECKPOINT_DIR).glob("*/config/metadata"))
  assert metas
  for meta in metas:
    stored = json.loads(meta.read_text())
    del stored["config"]["meta_optimizer_horizon"]
    meta.write_text(json.dumps(stored))
  with pytest.raises(ValueError, match="meta_optimizer_horizon"):
    si.self_improve(tiny_config(num_generations=2, meta_optimizer_horizon=5), wd, mesh=mesh)
  r = si.self_improve(tiny_config(num_generations=2), wd, mesh=mesh)
  assert r.generation == 2 and sorted({x["generation"] for x in lineage(wd)}) == [0, 1, 2]


def test_generations_lineage_and_resume(tmp_path):
  wd = str(tmp_path / "run")
  mesh = parallel.make_mesh(2)
  r = si.self_improve(tiny_config(), wd, mesh=mesh)
  assert r.generation == 2 and not r.preempted
  recs = lineage(wd)
  assert [(x["generation"], x["member"]) for x in recs] == [(g, m) for g in range(3)
                                                           for m in range(2)]
  for g in (1, 2):
    best_prev = next(x for x in recs if x["generation"] == g - 1 and x["best"])
    for x in recs:
      if x["generation"] == g:
        assert x["trained_by"] == {"generation": g - 1, "member": best_prev["member"]}
        prev = next(y for y in recs if y["generation"] == g - 1 and y["member"] == x["member"])
        assert x["parent"] == prev["parent_next"]
  for g in range(3):
    assert os.path.isfile(si.generation_file(wd, g))
  # Resume with one more generation: generations 0-2 are kept as they were, 3 is added once.
  r2 = si.self_improve(tiny_config(num_generations=3), wd, mesh=mesh)
  assert r2.generation == 3
  recs2 = lineage(wd)
  assert recs2[:len(recs)] == recs
  assert sorted({x["generation"] for x in recs2}) == [0, 1, 2, 3] and len(recs2) == 8
  with pytest.raises(ValueError, match="different config"):
    si.self_improve(tiny_config(num_generations=3, explore_sigma=0.5), wd, mesh=mesh)


def test_elite_mode_is_trained_by_the_best_rule_so_far_and_resumes(tmp_path):
  wd = str(tmp_path / "elite")
  mesh = parallel.make_mesh(2)
  r = si.self_improve(tiny_config(meta_optimizer="elite", num_generations=3), wd, mesh=mesh)
  r = si.self_improve(tiny_config(meta_optimizer="elite", num_generations=4), wd, mesh=mesh)
  recs = lineage(wd)
  bests = {x["generation"]: x for x in recs if x["best"]}
  for g in range(1, 5):
    elite = min((bests[h] for h in range(g)), key=lambda x: (x["fitness"], x["generation"]))
    for x in recs:
      if x["generation"] == g:
        assert x["trained_by"] == {"generation": elite["generation"], "member": elite["member"]}
  # The rule handed on (and checkpointed) is the elite's file, not necessarily the last best.
  elite = min(bests.values(), key=lambda x: (x["fitness"], x["generation"]))
  _, theta, _ = artifacts.resolve(si.generation_file(wd, elite["generation"]))
  for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(r.best_theta)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("mode", ["adam", "own"])
def test_control_modes_and_report(mode, tmp_path):
  wd = str(tmp_path / "control")
  si.self_improve(tiny_config(meta_optimizer=mode, num_generations=1), wd,
                  mesh=parallel.make_mesh(2))
  recs = lineage(wd)
  assert {x["trained_by"] for x in recs if x["generation"] == 1} == {mode}
  assert all(np.isfinite(x["fitness"]) for x in recs)
  from metalearn.evaluate import generations
  report = generations.write_generations_report(wd, evaluate=False)
  text = open(report).read()
  assert f"| 1 | 2 | {mode} |" in text   # generation 1: 2 outer steps, trained by the mode
  assert f"meta-optimizer `{mode}` ({generations.MODES[mode]}" in text
  for png in ("fitness.png", "lineage.png"):
    assert os.path.getsize(os.path.join(wd, "plots", png)) > 1000


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["best", "proven"])
def test_same_results_on_1_and_8_devices(mode, tmp_path):
  config = tiny_config(population_size=8, exploit_fraction=0.25, num_generations=2,
                       meta_optimizer=mode)
  runs = [si.self_improve(config, str(tmp_path / f"d{n}"), mesh=parallel.make_mesh(n))
          for n in (1, 8)]
  one, eight = (lineage(str(tmp_path / f"d{n}")) for n in (1, 8))
  assert [(x["generation"], x["member"], x["parent"]) for x in one] == [
      (x["generation"], x["member"], x["parent"]) for x in eight]
  np.testing.assert_allclose([x["fitness"] for x in one], [x["fitness"] for x in eight],
                             rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(runs[0].best_theta), jax.tree.leaves(runs[1].best_theta)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  if mode == "proven":   # the same contest: who trained whom, and who won
    assert [(x["trained_by"], x["meta_optimizer_next"]) for x in one] == [
        (x["trained_by"], x["meta_optimizer_next"]) for x in eight]


@pytest.mark.slow
def test_cli_sigkill_and_rerun_records_each_generation_once(tmp_path):
  """The real CLI in a subprocess, SIGKILLed once a generation is written, then rerun."""
  cfg = tmp_path / "si.py"
  cfg.write_text(
      "from metalearn.meta.self_improve import default_config\n"
      "def get_config():\n"
      "  c = default_config()\n"
      f"  c.rule, c.task_specs, c.eval_tasks = 'sgdm', {TRAIN!r}, {VALID!r}\n"
      "  c.population_per_task, c.truncation_length, c.min_horizon, c.max_horizon = 1, 5, 10, 20\n"
      "  c.population_size, c.num_generations, c.generation_steps = 2, 6, 200\n"
      "  c.fitness_horizon, c.fitness_seeds, c.exploit_fraction = 10, 1, 0.5\n"
      "  return c\n")
  wd = tmp_path / "run"
  env = {**os.environ, "PYTHONPATH": REPO, "JAX_NUM_CPU_DEVICES": "1"}
  cmd = [sys.executable, "-m", "metalearn.cli", "self-improve", "--config", str(cfg),
         "--workdir", str(wd)]
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(wd / si.LINEAGE) and any(
        x["generation"] >= 2 for x in lineage(str(wd))):
      break
    time.sleep(0.05)
  assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = max(x["generation"] for x in lineage(str(wd)))
  assert killed_at < 6
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
  assert "resuming" in out.stdout
  recs = lineage(str(wd))
  assert [(x["generation"], x["member"]) for x in recs] == [(g, m) for g in range(7)
                                                           for m in range(2)]
  # The same numbers as an uninterrupted run (same device count).
  ref_wd = str(tmp_path / "ref")
  from metalearn.meta import config as config_lib
  si.self_improve(config_lib.load_config(str(cfg), defaults=si.default_config), ref_wd,
                  mesh=parallel.make_mesh(1), progress=False)
  np.testing.assert_allclose([x["fitness"] for x in recs], [x["fitness"] for x in lineage(ref_wd)],
                             rtol=1e-5, atol=1e-6)


def test_random_init_differs_from_the_adam_like_init():
  mesh = parallel.make_mesh(2)
  key = jax.random.key(3)
  like = Population(tiny_config(init="adam_like"), mesh)
  rand = Population(tiny_config(init="random", init_scale=1.0), mesh)
  ref = like.rule.init_meta_params(jax.random.split(key)[0])
  for a, b in zip(jax.tree.leaves(like._init_theta(key)), jax.tree.leaves(ref)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(rand._init_theta(key)), jax.tree.leaves(ref)):
    assert np.all(np.abs(np.asarray(a) - np.asarray(b)) > 0)


LEGACY_TABLE_FAMILY = {
    "self_improve_accept.py", "self_improve_aligned.py", "self_improve_wide.py",
    "self_improve_every.py", "self_improve_dominant.py", "self_improve_rank.py",
    "self_improve_linreg.py", "self_improve_scaled.py", "self_improve_passed.py",
    "self_improve_scaled_abs.py", "self_improve_scaled_rank.py", "self_improve_restart.py"}


@pytest.mark.parametrize("recipe", sorted(
    os.path.basename(p) for p in glob.glob(os.path.join(REPO, "experiments", "self_improve*.py"))))
def test_recipe_loads_and_validates(recipe):
  config = si.load_config(os.path.join(REPO, "experiments", recipe))
  si.validate(config, 1)
  # Every recipe self-improves from random rules: no hand-designed meta-optimizer.
  assert config.init == "random" and config.meta_optimizer in ("best", "proven")
  from metalearn.evaluate import get_suite
  from metalearn.tasks import TaskSpec
  suite = {t.id: t.spec for t in get_suite(config.heldout_suite)}
  assert set(config.heldout_tasks) <= set(suite)
  # Fitness never scores a held-out task, and from 0.11.0 on no unseen-suite model at all. The
  # breast-cancer family of the 0.5.0-0.10.0 recipes is the suite's 10,000-step table task at
  # 1,000 steps (docs/self_improvement.md, "0.11.0"); those recipes stay as they ran.
  fitness = {TaskSpec.from_dict(dict(s)) for s in config.eval_tasks}
  assert not fitness & {suite[i] for i in config.heldout_tasks}
  overlap = {i for i, spec in suite.items() if spec in fitness}
  if recipe in LEGACY_TABLE_FAMILY:
    assert overlap == {"tabular_mlp_breast_cancer_32_relu_b32@10000"}
  else:
    assert not overlap, f"{recipe}: meta-validation scores unseen-suite models {overlap}"


def test_run_evaluation_rejects_unknown_task_ids(tmp_path):
  from metalearn.evaluate import run_evaluation
  with pytest.raises(ValueError, match="not in suite 'tiny'"):
    run_evaluation("init:sgdm", "tiny", str(tmp_path / "bad"), task_ids=["nope@1"])


@pytest.mark.slow
def test_run_evaluation_on_a_subset_of_a_suite(tmp_path):
  from metalearn.evaluate import get_suite, run_evaluation
  first = get_suite("tiny")[0].id
  res = run_evaluation("init:sgdm", "tiny", str(tmp_path / "ok"), seeds=1, progress=False,
                       task_ids=[first])
  assert [t["id"] for t in res["tasks"]] == [first] and res["complete"]
