"""Recipe of the shipped `pretrained("hyperparam_net")` rule: HyperparamNet meta-trained with PES.

Its task distribution is the image-MLP family's default (digits / mnist5k_8, width 16-128, depth
1-2; four task types from `task_seed=1`), not `pretrained_default.py`'s; horizons 100-1000 in
truncations of 20. The shipped file was made on one H200 with 32 pairs per task type (below) and
outer learning rate 1e-3, stopped after 120 s at outer step 7,220 (docs/artifacts.md).

    metalearn meta-train --config experiments/pretrained_hyperparam_net.py \
        --workdir runs/pretrained_hyperparam_net

See docs/artifacts.md for the compute used and the evaluation.
"""
from _base import get_config as base_config


def get_config():
  c = base_config()
  c.name = "pretrained_hyperparam_net"
  c.rule = "hyperparam_net"
  c.num_task_types = 4
  c.task_seed = 1
  c.population_per_task = 32
  return c
