"""Phase 2 of the 60-minute recipe (experiments/scaled_lopt_60.py): the controller alone, 20 min.

Starts from phase 1's newest checkpoint (``runs/scaled_lopt_60``) and meta-trains only the
step-size controller (``w_ctrl``, ``b_ctrl``, ``w_horizon``) with the update rule frozen, as
experiments/scaled_lopt_v4_controller.py did for 0.4.0. Same tasks, horizons, augmentation and
estimator as phase 1.

    timeout -s TERM 1200 metalearn meta-train --config experiments/scaled_lopt_60_controller.py \\
        --workdir runs/scaled_lopt_60c
"""
from scaled_lopt_60 import VALIDATION, VALIDATION_HORIZONS  # noqa: F401  (select_checkpoint)
from scaled_lopt_60 import get_config as phase1_config

VALIDATION_EVERY = 300


def get_config():
  c = phase1_config()
  c.name = "scaled_lopt_60_controller"
  c.init_theta = "runs/scaled_lopt_60"
  c.train_only = ("w_ctrl", "b_ctrl", "w_horizon")
  c.outer_lr = 1e-3
  c.checkpoint_every = 100
  return c
