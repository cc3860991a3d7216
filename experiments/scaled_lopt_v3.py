"""Recipe of the 0.3 `default` candidate: ScaledLOpt continued from the 0.2 `default` with what
issue #12 asked for and the 0.2 run lacked.

Changes against experiments/scaled_lopt.py (same rule, same TRAIN and VALIDATION families):
  * starts from ``pretrained:default`` (step 1,800 of the scaled_lopt run), not from the init;
  * horizons 100-5000 (log-uniform, random first cut): the 0.2 default lost the 5,000-step tasks
    because it never saw more than 2,000 steps;
  * weight-scale augmentation: every run reparameterises its weights p = s q with s log-uniform in
    [0.1, 10], so the rule cannot lean on one weight scale (ScaledLOpt is equivariant to it above
    its 0.03 floor; the augmentation covers the floor region);
  * scale-free meta-gradients: PES with the sign of each antithetic loss difference (VeLO);
  * outer learning rate 1e-3 (the 0.2 run at 3e-3 drifted and its inner runs diverged from
    step ~3,000).
Then ``experiments/select_checkpoint.py --gate 1.5`` picks the checkpoint on held-out families:
never worse than 1.5x the starting rule on any of them.

    timeout -s TERM 1800 metalearn meta-train --config experiments/scaled_lopt_v3.py \\
        --workdir runs/scaled_lopt_v3
    python experiments/select_checkpoint.py runs/scaled_lopt_v3 runs/scaled_lopt_v3/selected.safetensors \\
        --config experiments/scaled_lopt_v3.py --gate 1.5
"""
from scaled_lopt import TRAIN, VALIDATION  # noqa: F401  (select_checkpoint reads VALIDATION)
from scaled_lopt import get_config as base_config

VALIDATION_HORIZONS = (300, 3000)
VALIDATION_EVERY = 450


def get_config():
  c = base_config()
  c.name = "scaled_lopt_v3"
  c.init_theta = "pretrained:default"
  c.max_horizon = 5000
  c.weight_scale = (0.1, 10.0)
  c.es_sign = True
  c.outer_lr = 1e-3
  c.checkpoint_every = 150
  c.keep_checkpoints = 60
  return c
