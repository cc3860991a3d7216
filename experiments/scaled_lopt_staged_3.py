"""Stage 3 of 3 of the staged 60-minute recipe (experiments/scaled_lopt_staged_1.py has the plan).

The step-size controller alone (``w_ctrl``, ``b_ctrl`` and the horizon power law ``w_horizon``),
the update rule frozen, from stage 2's last checkpoint: the 0.4.0 phase
(experiments/scaled_lopt_v4_controller.py) without the per-tensor step adaptation, which 0.4.0
measured, found not to pay and shipped without. Its tasks (0.3.0's plus a 16-unit tanh MLP),
horizons, augmentation and estimator are 0.4.0's; 5,200 outer steps as in 0.4.0. Then
experiments/select_checkpoint.py scores every kept checkpoint on the held-out families, which add
the 4x128 MLP of experiments/scaled_lopt_60.py to 0.3.0's.

    metalearn meta-train --config experiments/scaled_lopt_staged_3.py --workdir runs/staged_3
    python experiments/select_checkpoint.py runs/staged_3 runs/staged_3/selected.safetensors \\
        --config experiments/scaled_lopt_staged_3.py
"""
import ml_collections

from scaled_lopt_60 import VALIDATION, VALIDATION_HORIZONS  # noqa: F401  (select_checkpoint)
from scaled_lopt_v4 import TRAIN_V4
from scaled_lopt_v3 import get_config as v3_config

VALIDATION_EVERY = 300


def get_config():
  c = v3_config()
  c.name = "scaled_lopt_staged_3"
  c.rule_kwargs = ml_collections.ConfigDict({"horizon_aware": True})
  c.task_specs = tuple(TRAIN_V4)
  c.init_theta = "runs/staged_2"     # stage 2's newest checkpoint
  c.train_only = ("w_ctrl", "b_ctrl", "w_horizon")
  c.num_outer_steps = 5200
  c.checkpoint_every = 100
  c.keep_checkpoints = 60
  return c
