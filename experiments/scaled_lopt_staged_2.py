"""Stage 2 of 3 of the staged 60-minute recipe (experiments/scaled_lopt_staged_1.py has the plan).

The 0.3.0 recipe (experiments/scaled_lopt_v3.py: horizons 100-5000, weight-scale augmentation in
[0.1, 10], PES with the sign of each antithetic difference, outer learning rate 1e-3), started from
stage 1's last checkpoint instead of the shipped 0.2.0 rule, for 2,250 outer steps (the step the
0.3.0 selection shipped).

    metalearn meta-train --config experiments/scaled_lopt_staged_2.py --workdir runs/staged_2
"""
from scaled_lopt_v3 import VALIDATION, VALIDATION_HORIZONS  # noqa: F401  (select_checkpoint)
from scaled_lopt_v3 import get_config as v3_config

VALIDATION_EVERY = 450


def get_config():
  c = v3_config()
  c.name = "scaled_lopt_staged_2"
  c.init_theta = "runs/staged_1"     # stage 1's newest checkpoint
  c.num_outer_steps = 2250
  c.checkpoint_every = 150
  c.keep_checkpoints = 15
  return c
