"""Recipe of a second-phase run (Celo's split): only the step-size controller of the 0.3.0
`default` plus the 0.4 options (gradient-sign step adaptation, horizon power law) is meta-trained;
the update rule (base step, normalisation, weight decay, direction MLP) stays frozen.

Why: experiments/scaled_lopt_v4.py meta-trained everything together and drifted (the base step
grew 3x and the normalisation exponent fell from 0.8 to 0.2); its validation-picked checkpoint
(step 6,000) reached tuned Adam on 5/15 out-of-distribution tasks, against 10/15 for its start's
parent (docs/rule_quality.md). Same TRAIN, VALIDATION, horizons, augmentation and estimator as
scaled_lopt_v4.py; the outer optimizer updates only ``train_only`` (zero meta-gradients for the rest).

    timeout -s TERM 1200 metalearn meta-train --config experiments/scaled_lopt_v4_controller.py \\
        --workdir runs/scaled_lopt_v4c
    python experiments/select_checkpoint.py runs/scaled_lopt_v4c runs/scaled_lopt_v4c/selected.safetensors \\
        --config experiments/scaled_lopt_v4_controller.py
"""
from scaled_lopt import VALIDATION  # noqa: F401  (select_checkpoint reads VALIDATION)
from scaled_lopt_v4 import get_config as v4_config

VALIDATION_HORIZONS = (300, 3000)
VALIDATION_EVERY = 300


def get_config():
  c = v4_config()
  c.name = "scaled_lopt_v4_controller"
  c.train_only = ("w_ctrl", "b_ctrl", "adapt_rate", "adapt_bias", "w_horizon")
  return c
