"""A tiny meta-training config shared by the engine tests (seconds per run on CPU)."""
from metalearn.meta import config as config_lib


def tiny_config(**overrides):
  c = config_lib.default_config()
  c.task_specs = ({"kind": "linreg", "dim": 8, "batch_size": 16},
                  {"kind": "quadratic", "dim": 8, "batch_size": 4})
  c.population_per_task = 8
  c.truncation_length = 5
  c.min_horizon = 10
  c.max_horizon = 30
  c.num_outer_steps = 6
  c.checkpoint_every = 2
  c.log_every = 1
  c.eval_horizon = 20
  c.progress = False
  c.estimator = "pes"
  c.num_devices = 1
  for k, v in overrides.items():
    c[k] = v
  return c


TINY_FLAGS = [
    '--config.task_specs=({"kind": "linreg", "dim": 8, "batch_size": 16}, '
    '{"kind": "quadratic", "dim": 8, "batch_size": 4})',
    "--config.population_per_task=8", "--config.truncation_length=5", "--config.min_horizon=10",
    "--config.max_horizon=30", "--config.checkpoint_every=2", "--config.log_every=1",
    "--config.eval_horizon=20", "--config.progress=False", "--config.num_devices=1",
]
