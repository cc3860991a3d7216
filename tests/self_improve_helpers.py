"""A tiny self-improvement config shared by test_self_improve.py and test_fitness.py."""
from metalearn.meta import self_improve as si

TRAIN = ({"kind": "linreg", "dim": 4, "seed": 1, "batch_size": 8},)
VALID = ({"kind": "linreg", "dim": 6, "seed": 2, "batch_size": 8},)


def tiny_config(**kw):
  """Seconds per generation: a learnable SGD+momentum rule (small program) on tiny regressions."""
  c = si.default_config()
  c.rule = "sgdm"
  c.task_specs, c.eval_tasks = TRAIN, VALID
  c.population_per_task = 1
  c.truncation_length, c.min_horizon, c.max_horizon = 5, 10, 20
  c.population_size, c.num_generations, c.generation_steps = 2, 2, 2
  c.fitness_horizon, c.fitness_seeds = 10, 1
  c.exploit_fraction = 0.5
  c.progress = False
  for k, v in kw.items():
    c[k] = v
  return c
