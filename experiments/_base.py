"""The settings every shipped recipe shares; each recipe derives from it and sets what differs.

PES over image-MLP task families, horizons 100-1000 (log-uniform) in truncations of 20, eight
antithetic pairs per task type, 3,000 outer steps (shipped runs were stopped earlier, see each
recipe). Not a runnable recipe on its own (its name starts with `_`).
"""
from metalearn.meta.config import default_config


def get_config():
  c = default_config()
  c.task_families = ("image_mlp",)
  c.population_per_task = 8
  c.truncation_length = 20
  c.min_horizon = 100
  c.max_horizon = 1000
  c.estimator = "pes"
  c.es_sigma = 0.01
  c.outer_lr = 1e-3
  c.num_outer_steps = 3000
  c.checkpoint_every = 50
  c.log_every = 10
  c.eval_horizon = 500
  return c
