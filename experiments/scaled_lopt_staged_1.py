"""Recipe of a staged 60-minute ScaledLOpt run from the rule's init (issue #12): stage 1 of 3.

What shipped as `default` (0.4.0) continues a lineage of three runs, about 115 min of wall time
when they ran (2026-11, beside other jobs). Each stage's *start* mattered more than its length:
the one-phase 60-minute run from the init (experiments/scaled_lopt_60.py, every lesson at once)
drifted and lost 13/15 tasks. This recipe replays the lineage's stages from ``init:scaled_lopt``
with the lengths its selections picked, so it is the same curriculum in less time:

  1. this file: experiments/scaled_lopt.py (the 0.2.0 recipe: horizons 100-2000, outer learning
     rate 3e-3, plain PES) for 1,800 outer steps, the step 0.2.0's selection shipped (it drifted
     from ~3,000 on);
  2. experiments/scaled_lopt_staged_2.py: the 0.3.0 recipe (horizons 100-5000, weight-scale
     augmentation, sign-PES, 1e-3) from stage 1's last step, for 2,250 steps (0.3.0's pick);
  3. experiments/scaled_lopt_staged_3.py: the step-size controller alone, with the horizon power
     law, from stage 2's last step (0.4.0's phase without the step adaptation it dropped), then
     experiments/select_checkpoint.py picks among its checkpoints on the held-out families.

    metalearn meta-train --config experiments/scaled_lopt_staged_1.py --workdir runs/staged_1
    metalearn meta-train --config experiments/scaled_lopt_staged_2.py --workdir runs/staged_2
    metalearn meta-train --config experiments/scaled_lopt_staged_3.py --workdir runs/staged_3
    python experiments/select_checkpoint.py runs/staged_3 runs/staged_3/selected.safetensors \\
        --config experiments/scaled_lopt_staged_3.py

Measured alone on the shared 2-core CPU (2026-11-28): 454 s + 575 s + 1,238 s = 37.8 min of
meta-training, 532 s of scoring. It reaches tuned Adam on 10/15 out-of-distribution tasks
(`default`: 12/15); stages 1-2 with ``--config.seed=1`` reach 5/15 and diverge on one. Not
shipped: docs/rule_quality.md, "0.6.0", has the tables and what drifted.
"""
from scaled_lopt import VALIDATION, VALIDATION_HORIZONS  # noqa: F401  (select_checkpoint)
from scaled_lopt import get_config as v2_config

VALIDATION_EVERY = 300


def get_config():
  c = v2_config()
  c.name = "scaled_lopt_staged_1"
  c.num_outer_steps = 1800
  c.checkpoint_every = 300
  c.keep_checkpoints = 7
  return c
