"""Stage 3 of the transformer-aware staged recipe (experiments/scaled_lopt_tf_1.py has the plan):
the step-size controller alone, with the horizon power law, from stage 2's last step.

As experiments/scaled_lopt_staged_3.py (0.4.0's controller phase: ``w_ctrl``, ``b_ctrl`` and
``w_horizon`` trained, the update rule frozen), with stage 1's tasks plus 0.4.0's 16-unit tanh
MLP, for 3,000 outer steps (0.4.0's pick was step 1,800; the replay's 600), then picked by the
transformer-aware validation, with the mean of the second half's checkpoints as a candidate.

Caveat, stated before its result: stage 2's validation pick was its start (stage 1's step 750),
and this stage starts from stage 2's *last* step instead, as the 0.6.0 replay's stage 3 did, and
after seeing that step's out-of-distribution result (9/15, the same count as the pick, with the
2-layer transformer won). docs/rule_quality.md, "0.7.0".

    metalearn meta-train --config experiments/scaled_lopt_tf_3.py --workdir runs/tf_3
    python experiments/select_checkpoint.py runs/tf_3 runs/tf_3/selected.safetensors \\
        --config experiments/scaled_lopt_tf_3.py --average 1500:3000
"""
import ml_collections

from scaled_lopt import _mlp
from scaled_lopt_tf_1 import TRAIN_TF, VALIDATION  # noqa: F401  (select_checkpoint)
from scaled_lopt_tf_1 import VALIDATION_HORIZONS, VALIDATION_HORIZONS_BY_KIND  # noqa: F401
from scaled_lopt_v3 import get_config as v3_config

VALIDATION_EVERY = 300


def get_config():
  c = v3_config()
  c.name = "scaled_lopt_tf_3"
  c.rule_kwargs = ml_collections.ConfigDict({"horizon_aware": True})
  c.task_specs = tuple(TRAIN_TF + [_mlp("digits", (16,), "tanh", 16)])
  c.eval_tasks = tuple(VALIDATION)
  c.init_theta = "runs/tf_2"          # stage 2's newest checkpoint (step 1,500)
  c.train_only = ("w_ctrl", "b_ctrl", "w_horizon")
  c.num_outer_steps = 3000
  c.checkpoint_every = 150
  c.keep_checkpoints = 20
  return c
