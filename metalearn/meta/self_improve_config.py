"""The self-improvement config (``metalearn.meta.self_improve``): its keys and defaults
(``default_config``: the meta-training keys plus the self-improvement ones), loading a recipe
(``load_config``) and checking it (``validate``, which names the first invalid value and its fix).
"""
from __future__ import annotations

import json

import jax
import ml_collections

from metalearn.meta import config as config_lib
from metalearn.optimizers import make_rule

META_OPTIMIZERS = ("best", "elite", "proven", "own", "adam")
INITS = ("random", "adam_like")
ACCEPT = ("always", "improved", "improved_all")
GENERATION_END = ("steps", "passed")
BEST_BY = ("mean", "dominant", "rank")
# Keys that may change between runs on one workdir (more generations, other held-out settings).
RESUMABLE = config_lib.RESUMABLE_KEYS | {"num_generations", "heldout_tasks", "heldout_seeds",
                                         "heldout_suite"}


def default_config() -> ml_collections.ConfigDict:
  """The meta-training keys (``meta.config.default_config``) plus the self-improvement ones."""
  c = config_lib.default_config()
  c.name = "self_improve"
  c.population_size = 8           # rules in the population; a multiple of the device count
  c.num_generations = 3           # generations after generation 0 (the initial population)
  c.generation_steps = 20         # outer steps per member per generation (K)
  c.init = "random"               # random | adam_like
  c.init_scale = 1.0              # random init: rule init + init_scale * N(0, 1) per element
  c.meta_optimizer = "best"       # best | elite (best so far) | own | adam (the control) |
                                  # proven: half the members are trained by the incumbent (the
                                  # rule whose members gained most last time), half by the
                                  # challenger (the previous generation's best member whose
                                  # rule is not the incumbent's); the half that gained more
                                  # fitness names the next incumbent (proven.py)
  c.accept = "always"             # always | improved: a member keeps a generation's training only
                                  # if it improved its fitness (else it goes back to its start) |
                                  # improved_all: ... and no meta-validation task got worse
  c.accept_every = 0              # N > 0 (with accept != always): fitness is also measured every
                                  # N outer steps inside a generation, and a member keeps the best
                                  # accepted point of its trajectory, not only its end
  c.generation_end = "steps"      # steps: a generation is generation_steps outer steps |
                                  # passed (needs accept_every): it ends at the first check, from
                                  # generation_min_steps on, where some member's kept point passes
                                  # the previous generation's best (no worse on any meta-validation
                                  # task, mean lower by more than pass_margin); generation_steps is
                                  # then the most a generation runs (it ends there, passed or not)
  c.generation_min_steps = 0      # passed: no generation ends before this many outer steps
  c.pass_margin = 0.0             # passed: how much lower a passing member's mean fitness must be
  c.dominance_tolerance = 0.0     # passed and best_by=dominant: a member still counts as no worse
                                  # than the previous best on a task if it is at most this much
                                  # worse there (fitness is a log loss ratio: 0.1 is ~10%)
  c.best_by = "mean"              # mean: a generation's best is its lowest mean fitness |
                                  # dominant: ... among the members no worse than the previous
                                  # generation's best on any meta-validation task |
                                  # rank: members (the best and PBT's exploit) are ordered by
                                  # their mean per-task rank in the population, so no single
                                  # task's spread carries the order
  c.meta_optimizer_rule_kwargs = ml_collections.ConfigDict({})   # rule_kwargs changed only
                                  # where a member's rule is the meta-optimizer (the same
                                  # meta-parameters), e.g. {"relative": False}: ScaledLOpt's steps
                                  # on theta are then not a fraction of each theta tensor's RMS
  c.meta_optimizer_horizon = 0    # H > 0: a learned meta-optimizer is told H steps and restarts
                                  # its state every H outer steps (0: the whole run, one state)
  c.meta_step_scale = (1.0, 1.0)  # (lo, hi): each member multiplies its meta-optimizer's steps
                                  # by its own factor, drawn log-uniform in [lo, hi] at the start,
                                  # copied at exploit and multiplied by 1.25 or 1/1.25 at explore
                                  # (PBT tunes it); (1, 1): no multiplier
  c.exploit_fraction = 0.25       # bottom fraction copies the top fraction
  c.explore_sigma = 0.05          # perturbation of a copied theta: + explore_sigma * N(0, 1)
  c.fitness_horizon = 200         # steps each meta-validation task is trained for (fitness)
  c.fitness_horizons = ()         # one horizon per eval_task (overrides fitness_horizon), e.g. a
                                  # CNN family shorter than the rest; (): fitness_horizon for all
  c.fitness_seeds = 2
  c.fitness_floor = 0.0           # F < 0: each task's fitness counts no lower than F (a loss
                                  # cut e^-F-fold gets no more credit), so the families whose
                                  # training loss can be driven to ~0 do not outvote the rest;
                                  # 0: no floor
  # The report's held-out evaluation of each generation's best rule vs tuned baselines.
  c.heldout_suite = "out_of_distribution"
  c.heldout_tasks = ()            # task ids of that suite (empty: the whole suite)
  c.heldout_seeds = 2
  c.population_per_task = 2
  c.estimator = "es"
  c.eval_every = 0
  return c


def meta_optimizer_rule(config):
  """The rule where a member's rule is the meta-optimizer: ``rule`` with ``rule_kwargs`` updated
  by ``meta_optimizer_rule_kwargs`` (``validate`` checks it keeps the meta-parameters)."""
  return make_rule(config.rule, **{**config_lib.plain(config.rule_kwargs),
                                   **config_lib.plain(config.meta_optimizer_rule_kwargs)})


def load_config(path: str | None) -> ml_collections.ConfigDict:
  return config_lib.load_config(path, defaults=default_config)


def validate(config, num_devices: int) -> None:
  """Raises ValueError naming the first invalid value and how to fix it."""
  config_lib.validate(config, 1)   # the inner populations are not sharded here; members are
  c = config

  def need(cond, msg):
    if not cond:
      raise ValueError(f"invalid config: {msg}")

  for key in ("population_size", "num_generations", "generation_steps", "fitness_horizon",
              "fitness_seeds", "heldout_seeds"):
    need(isinstance(c[key], int) and not isinstance(c[key], bool) and c[key] > 0,
         f"{key} must be a positive integer, got {c[key]!r}.")
  need(c.population_size >= 2, f"population_size must be >= 2, got {c.population_size}.")
  need(c.population_size % num_devices == 0,
       f"population_size={c.population_size} does not divide over {num_devices} devices; use a "
       f"multiple of {num_devices} (or set num_devices).")
  need(isinstance(c.meta_optimizer_horizon, int) and not isinstance(c.meta_optimizer_horizon, bool)
       and c.meta_optimizer_horizon >= 0,
       f"meta_optimizer_horizon must be an integer >= 0 (0: the whole run), got "
       f"{c.meta_optimizer_horizon!r}.")
  need(c.accept in ACCEPT, f"accept must be one of {ACCEPT}, got {c.accept!r}.")
  need(isinstance(c.accept_every, int) and not isinstance(c.accept_every, bool)
       and c.accept_every >= 0,
       f"accept_every must be an integer >= 0 (0: fitness only at the end of a generation), got "
       f"{c.accept_every!r}.")
  need(not c.accept_every or c.accept != "always",
       f"accept_every={c.accept_every} keeps the best accepted point of a generation, so it needs "
       f"accept='improved' or 'improved_all' (accept is 'always').")
  need(c.generation_end in GENERATION_END,
       f"generation_end must be one of {GENERATION_END}, got {c.generation_end!r}.")
  need(c.generation_end != "passed" or c.accept_every,
       "generation_end='passed' ends a generation at a fitness check inside it, so it needs "
       "accept_every > 0 (and accept='improved' or 'improved_all').")
  need(isinstance(c.generation_min_steps, int) and not isinstance(c.generation_min_steps, bool)
       and 0 <= c.generation_min_steps <= c.generation_steps,
       f"generation_min_steps must be an integer in [0, generation_steps={c.generation_steps}], "
       f"got {c.generation_min_steps!r}.")
  need(isinstance(c.pass_margin, (int, float)) and not isinstance(c.pass_margin, bool)
       and c.pass_margin >= 0, f"pass_margin must be a number >= 0, got {c.pass_margin!r}.")
  need(isinstance(c.dominance_tolerance, (int, float))
       and not isinstance(c.dominance_tolerance, bool) and c.dominance_tolerance >= 0,
       f"dominance_tolerance must be a number >= 0, got {c.dominance_tolerance!r}.")
  need(isinstance(c.fitness_floor, (int, float)) and not isinstance(c.fitness_floor, bool)
       and c.fitness_floor <= 0,
       f"fitness_floor must be a number <= 0 (e.g. -5.0: no credit for a loss cut more than "
       f"e^5-fold; 0: no floor), got {c.fitness_floor!r}.")
  need(c.best_by in BEST_BY, f"best_by must be one of {BEST_BY}, got {c.best_by!r}.")
  need(c.init in INITS, f"init must be one of {INITS}, got {c.init!r}.")
  need(c.meta_optimizer in META_OPTIMIZERS,
       f"meta_optimizer must be one of {META_OPTIMIZERS}, got {c.meta_optimizer!r}.")
  need(0 < c.exploit_fraction <= 0.5, f"exploit_fraction must be in (0, 0.5], got "
       f"{c.exploit_fraction}.")
  need(c.explore_sigma >= 0 and c.init_scale >= 0, "explore_sigma and init_scale must be >= 0.")
  mss = tuple(c.meta_step_scale)
  need(len(mss) == 2 and 0 < mss[0] <= mss[1],
       f"meta_step_scale must be (lo, hi) with 0 < lo <= hi (e.g. (0.1, 1.0); (1, 1): no "
       f"multiplier), got {mss!r}.")
  need(c.eval_tasks, "eval_tasks (the meta-validation tasks that fitness is measured on) is empty; "
       "set it to task specs that are not meta-training tasks.")
  hs = tuple(c.fitness_horizons)
  need(not hs or (len(hs) == len(c.eval_tasks) and all(
      isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hs)),
       f"fitness_horizons must be empty (fitness_horizon for every task) or one integer >= 1 per "
       f"eval_task ({len(c.eval_tasks)} tasks), got {hs!r}.")
  train = {json.dumps(dict(s), sort_keys=True) for s in c.task_specs}
  shared = [dict(s) for s in c.eval_tasks if json.dumps(dict(s), sort_keys=True) in train]
  need(not shared, f"eval_tasks must not be meta-training tasks (task_specs); both have {shared}.")
  outer = config_lib.plain(c.meta_optimizer_rule_kwargs)
  if outer:
    try:
      rule = make_rule(c.rule, **config_lib.plain(c.rule_kwargs))
      outer_rule = meta_optimizer_rule(c)
    except (TypeError, ValueError) as e:
      raise ValueError(f"invalid config: meta_optimizer_rule_kwargs={outer!r} for rule "
                       f"{c.rule!r}: {e}") from None
    shapes = lambda r: jax.tree.map(lambda a: (a.shape, a.dtype),
                                    jax.eval_shape(r.init_meta_params, jax.random.key(0)))
    need(shapes(rule) == shapes(outer_rule),
         f"meta_optimizer_rule_kwargs={outer!r} changes rule {c.rule!r}'s meta-parameters, so a "
         f"member's theta could not be its meta-optimizer; change only settings that keep them "
         f"(e.g. {{'relative': False}} for scaled_lopt).")
  need(c.rule != "adam" or c.meta_optimizer == "adam",
       "rule 'adam' has no learned state to train a rule with; use a learned rule.")
