"""Stage 2 of 2 of the transformer-aware staged recipe (experiments/scaled_lopt_tf_1.py has the plan).

The 0.3.0 recipe (experiments/scaled_lopt_v3.py: horizons 100-5000, weight-scale augmentation in
[0.1, 10], sign-PES, outer learning rate 1e-3) with stage 1's tasks (the 2-layer transformer
added), from stage 1's validation pick, for 1,500 outer steps (the staged replay's stage 2 scored
best at step 1,050 and drifted from 1,500 on), then picked by the same validation.

    metalearn meta-train --config experiments/scaled_lopt_tf_2.py --workdir runs/tf_2
    python experiments/select_checkpoint.py runs/tf_2 runs/tf_2/selected.safetensors \\
        --config experiments/scaled_lopt_tf_2.py
"""
from scaled_lopt_tf_1 import TRAIN_TF, VALIDATION  # noqa: F401  (select_checkpoint)
from scaled_lopt_tf_1 import VALIDATION_HORIZONS, VALIDATION_HORIZONS_BY_KIND  # noqa: F401
from scaled_lopt_v3 import get_config as v3_config

VALIDATION_EVERY = 150


def get_config():
  c = v3_config()
  c.name = "scaled_lopt_tf_2"
  c.task_specs = tuple(TRAIN_TF)
  c.eval_tasks = tuple(VALIDATION)
  c.init_theta = "runs/tf_1/selected.safetensors"   # stage 1's validation pick
  c.num_outer_steps = 1500
  c.checkpoint_every = 150
  c.keep_checkpoints = 10
  return c
