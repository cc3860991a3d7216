"""Self-improvement: learned rules that meta-train their own successors, with PBT across generations.

    result = self_improve(config, "runs/self_improve")   # resumes from the newest checkpoint

Generation 0 is a population of ``population_size`` rules at random meta-parameters (``init``:
``"random"``, the rule's init plus ``init_scale`` x N(0, 1) on every meta-parameter; or
``"adam_like"``, the rule's own init, for comparison). Their fitness is measured on the
meta-validation tasks (``eval_tasks``, which must not be meta-training tasks). Then, for each
generation g = 1 .. ``num_generations``:

1. every member is meta-trained ``generation_steps`` outer steps with the config's estimator; its
   meta-gradient is applied by the rule of generation g-1's best member (``meta_optimizer="best"``,
   the default), by the best rule of any generation so far (``"elite"``), by its own rule
   (``"own"``), or by Adam (``"adam"``, the control), always with
   the member's own meta-optimizer state (see ``population.py``). With ``"proven"`` a rule must
   earn the job (``proven.py``): half the members are trained by the incumbent, half by the
   challenger (generation g-1's best member whose rule is not the incumbent's), and the rule
   whose half gained more mean fitness over the generation (start minus kept, ``meta_gain`` in
   the lineage) is the next incumbent (``meta_optimizer_next``; ``challenger_next``);
2. its fitness is measured on the meta-validation tasks (lower is better: the mean over the
   tasks, each recorded in the lineage as ``task_fitness``); with ``accept="improved"`` a member
   whose fitness did not improve on its fitness at the start of the generation (measured then,
   same seeds) goes back to its start theta and meta-optimizer state, so no member's fitness ever
   gets worse across a generation (``accepted`` in the lineage); ``accept="improved_all"`` also
   sends it back if any single task got worse (a mean can improve by overfitting one family);
   with ``accept_every=N`` fitness is also measured every N outer steps inside the generation,
   and a member keeps, of the points accepted against its start, the one with the best mean
   fitness (``kept_step`` in the lineage); with ``generation_end="passed"`` the generation ends
   at the first such check (from ``generation_min_steps`` on) where a member's kept point passes
   generation g-1's best (no worse on any task, up to ``dominance_tolerance``, and a mean lower by
   more than ``pass_margin``), and
   ``generation_steps`` is the most it runs (``steps`` in the lineage: how long it ran);
   the generation's best is its lowest mean fitness, or with ``best_by="dominant"`` the lowest
   mean among the members no worse than the previous generation's best on any task, or with
   ``best_by="rank"`` the lowest mean over tasks of its rank within the population (which also
   orders PBT's exploit), so a member carried by one task's large spread does not lead;
3. PBT exploit/explore: the bottom ``exploit_fraction`` copy a random top-``exploit_fraction``
   member's meta-parameters, meta-optimizer state and inner runs, then perturb the meta-parameters.

Written to the workdir: ``lineage.jsonl`` (one line per member and generation: its fitness, the
member of the previous generation it continued from, and the rule that trained it),
``generations/gen_NNN.safetensors`` (each generation's best rule, loadable by every tool that takes
a ``.safetensors`` file), ``config.json`` and ``checkpoints/`` (orbax, one per generation: every
member's state, the best rule and, in the checkpoint's JSON, the lineage so far). The lineage file
is rewritten from the checkpoint after each save and on resume, so a run killed at any point
(SIGKILL included) resumes at the last finished generation and records each generation once.
SIGTERM / Ctrl-C stop after the current outer step without saving it (the generation is redone).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import numpy as np
from etils import epath

import metalearn.artifacts as artifacts
import metalearn.parallel as parallel
from metalearn.checkpoint import Checkpointer
from metalearn.files import atomic_write
from metalearn.meta import config as config_lib
from metalearn.meta.population import Population
from metalearn.meta.selection import (Kept, accepted_members, best_member, best_of,  # noqa: F401
                                      elite_of, member_score, passing_members, rank_score)
from metalearn.meta.proven import Contest
from metalearn.meta.self_improve_config import (ACCEPT, BEST_BY, GENERATION_END,  # noqa: F401
                                               RESUMABLE, default_config, load_config, validate)
from metalearn.meta.train import check_workdir

LINEAGE = "lineage.jsonl"
GENERATIONS = "generations"
FORMAT = "metalearn.self_improve.v1"


@dataclasses.dataclass
class Result:
  generation: int                  # generations finished (0: only the initial population)
  best_theta: object
  best_fitness: float
  lineage: list                    # the records of lineage.jsonl
  preempted: bool = False
  signal: str | None = None


def _records(generation, task_fitness, parents, trained_by, meta_loss=None,
             accepted=None, meta_steps=None, kept_step=None, best=0,
             steps=None) -> list[dict]:
  """``trained_by``: one value for every member, or (``"proven"``) a list of one per member."""
  fitness = task_fitness.mean(axis=1)
  trainer = trained_by if isinstance(trained_by, list) else [trained_by] * len(fitness)
  return [{"generation": generation, "member": i, "fitness": float(fitness[i]),
           "task_fitness": [float(x) for x in task_fitness[i]],
           "parent": None if parents is None else int(parents[i]),
           "trained_by": trainer[i], "best": i == best,
           "meta_loss": None if meta_loss is None else float(meta_loss[i])}
          | ({} if accepted is None else {"accepted": bool(accepted[i])})
          | ({} if meta_steps is None else {"meta_step": float(meta_steps[i])})
          | ({} if kept_step is None else {"kept_step": int(kept_step[i])})
          | ({} if steps is None else {"steps": int(steps)})
          for i in range(len(fitness))]


def _write_lineage(root: epath.Path, lineage: list) -> None:
  atomic_write(root / LINEAGE, "".join(json.dumps(r) + "\n" for r in lineage))


def generation_file(workdir: str, generation: int) -> str:
  return os.path.join(workdir, GENERATIONS, f"gen_{generation:03d}.safetensors")


def self_improve(config, workdir: str, *, mesh=None, progress: bool | None = None) -> Result:
  """Runs (or resumes) self-improvement to ``num_generations`` in ``workdir`` (module doc)."""
  mesh = mesh or parallel.make_mesh(config.num_devices or None)
  validate(config, mesh.devices.size)
  check_workdir(workdir)
  pop = Population(config, mesh)
  cfg_json = config_lib.to_json(config)
  root = epath.Path(workdir)
  progress = config.progress if progress is None else progress
  log = print if progress else (lambda *a, **k: None)
  ckpt = Checkpointer(str(root / artifacts.CHECKPOINT_DIR), keep=config.keep_checkpoints)
  proven = config.meta_optimizer == "proven"
  try:
    if ckpt.latest_step() is None:
      members, lineage, done, meta_theta = pop.init_members(), [], -1, None
      contest = Contest() if proven else None
    else:
      stored, done = ckpt.newest_config()
      bad = config_lib.incompatible_keys(
          {k: v for k, v in stored["config"].items() if k not in RESUMABLE},
          {k: v for k, v in cfg_json.items() if k not in RESUMABLE},
          config_lib.to_json(default_config()))
      if bad:
        raise ValueError(
            f"workdir {workdir} holds a self-improvement run of a different config ("
            + ", ".join(f"{k}: {stored['config'].get(k)!r} there vs {cfg_json.get(k)!r} now"
                        for k in bad) + "). Use a new --workdir, or the same config to resume.")
      template = {"members": pop.abstract_members(),
                  "meta_theta": jax.tree.map(
                      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                                     sharding=parallel.replicated(mesh)),
                      jax.eval_shape(pop._init_theta, jax.random.key(0)))}
      if proven:
        template |= {k: template["meta_theta"] for k in Contest().state()}
      state, done = ckpt.restore(template)
      members, meta_theta = state["members"], state["meta_theta"]
      lineage = ckpt.config(done)["lineage"]
      contest = Contest.restore(state, best_of(lineage, done)) if proven else None
      log(f"resuming {workdir} after generation {done}")
    atomic_write(root / "config.json", json.dumps(cfg_json, indent=2))
    _write_lineage(root, lineage)   # the checkpoint's lineage is the truth (see module doc)
    ckpt.install_signal_handlers()

    def finish_generation(g, task_fitness, trained_by, meta_loss, came_from, accepted=None,
                          kept_step=None, steps=None, meta_gain=None):
      nonlocal members, lineage
      fitness = task_fitness.mean(axis=1)
      best = best_member(task_fitness, best_of(lineage, g - 1)["task_fitness"] if g else None,
                         config.best_by, config.dominance_tolerance)
      best_theta = pop.member_theta(members, best)
      artifacts.save(generation_file(workdir, g), pop.rule, best_theta, generation=g,
                     member=best, fitness=float(fitness[best]), self_improve_workdir=workdir,
                     task_specs=[s.to_dict() for s in pop.specs], estimator=config.estimator,
                     train_horizon=[config.min_horizon, config.max_horizon])
      parents = pop.parents(member_score(task_fitness, config.best_by), g)   # mean unless rank
      parents[best] = best   # never replaced (with best_by="dominant" its mean may rank low)
      lineage = lineage + _records(g, task_fitness, came_from, trained_by, meta_loss, accepted,
                                     pop.meta_steps(members),
                                     kept_step if config.accept_every else None, best, steps)
      if proven:   # before PBT changes the members
        contest.next_challenger(g, task_fitness, jax.device_get(members["theta"]), config.best_by)
      for r in lineage[-len(fitness):]:
        r["parent_next"] = int(parents[r["member"]])   # whom it becomes in generation g+1
        if proven:
          r |= contest.records()
          if meta_gain is not None:
            gain = meta_gain[r["member"]]
            r["meta_gain"] = float(gain) if np.isfinite(gain) else None
      members = pop.exploit_explore(members, parents, g)
      if config.meta_optimizer == "elite" and elite_of(lineage, g)["generation"] != g:
        best_theta = meta_theta   # this generation's best is no better: the elite stays
      state = {"members": members, "meta_theta": jax.tree.map(np.asarray, best_theta)}
      if proven:
        state |= contest.state()
      ckpt.save(g, state, {"format": FORMAT, "config": cfg_json, "lineage": lineage})
      ckpt.wait()
      _write_lineage(root, lineage)
      log(f"generation {g}" + (f" ({steps} outer steps)" if steps else "") +
          f": best fitness {fitness[best]:.4f} (member {best}), median "
          f"{np.median(fitness):.4f}; copied: "
          f"{[(int(i), int(p)) for i, p in enumerate(parents) if p != i]}")
      return best_theta

    t0 = time.perf_counter()
    if done < 0:
      meta_theta = finish_generation(0, pop.task_fitness(members["theta"]), None, None, None)
      done = 0
    for g in range(done + 1, config.num_generations + 1):
      prev = (elite_of if config.meta_optimizer == "elite" else best_of)(lineage, g - 1)
      trained_by = (config.meta_optimizer if config.meta_optimizer in ("adam", "own")
                    else {"generation": prev["generation"], "member": prev["member"]})
      # Each member's parent in g-1 is the member whose state it took at the exploit.
      came_from = {r["member"]: r["parent_next"] for r in lineage if r["generation"] == g - 1}
      came_from = [came_from[i] for i in range(pop.size)]
      trainers, which = meta_theta, None
      if proven:   # the incumbent (0) and the challenger (1), each half the members
        trainers, which, trained_by = contest.plan(pop.size, config.seed, g)
      loss_sum = np.zeros(pop.size)
      kept = None   # accept: each member's best accepted point so far (the start at first)
      if config.accept != "always" or proven:   # (step donates the members)
        start_fitness = pop.task_fitness(members["theta"])
      if config.accept != "always":   # the start, to go back to
        kept = Kept(pop.restore_point(members), start_fitness, np.zeros(pop.size, np.int64),
                     start_fitness)
      for k in range(config.generation_steps):
        step = (g - 1) * config.generation_steps + k
        members, meta_loss = pop.step(members, trainers, step, which)
        loss_sum += np.asarray(jax.device_get(meta_loss))
        if ckpt.should_stop(step):
          log(f"stopped ({ckpt.stop_signal}) during generation {g}; it is redone on resume.")
          return Result(done, meta_theta, best_of(lineage, done)["fitness"], lineage, True,
                        ckpt.stop_signal)
        if (config.accept_every and (k + 1) % config.accept_every == 0
            and k + 1 < config.generation_steps):
          now = pop.task_fitness(members["theta"])
          kept = kept.update(pop, members, config.accept, k + 1, now)
          if (config.generation_end == "passed" and k + 1 >= config.generation_min_steps
              and passing_members(kept.fitness, best_of(lineage, g - 1)["task_fitness"],
                                  config.pass_margin, config.dominance_tolerance).any()):
            steps, end_fitness = k + 1, now   # a member passed the previous best: the end
            break
      else:
        steps, end_fitness = config.generation_steps, pop.task_fitness(members["theta"])
      fitness, accepted, kept_step = end_fitness, None, None
      if kept is not None:
        members, fitness, kept_step = kept.finish(pop, members, fitness, config.accept, steps)
        accepted = kept_step > 0
      gain = None
      if proven:
        gain = start_fitness.mean(axis=1) - fitness.mean(axis=1)
        contest.settle(gain, which)
      meta_theta = finish_generation(g, fitness, trained_by, loss_sum / steps, came_from,
                                     accepted, kept_step, steps, gain)
      done = g
      log(f"  ({time.perf_counter() - t0:.0f} s so far)")
    best = best_of(lineage, done)
    return Result(done, meta_theta, best["fitness"], lineage)
  finally:
    ckpt.close()
