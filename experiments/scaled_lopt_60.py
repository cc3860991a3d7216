"""Recipe of a 60-minute ScaledLOpt run from the rule's init (issue #12's compute budget): phase 1.

What shipped as `default` (0.4.0) continues a lineage of three runs (about 115 min of
meta-training: 0.2.0's 55, 0.3.0's 40, 0.4.0's 20). This recipe puts the lineage's lessons into
one run from ``init:scaled_lopt`` that fits the issue's 60 minutes on the 2-core CPU:

  * phase 1 (this file, 40 min): every meta-parameter, with the 0.3.0 recipe's horizons 100-5000,
    weight-scale augmentation in [0.1, 10] and sign-PES, the horizon power law from the start
    (``horizon_aware``; it paid in 0.4.0), and 0.4.0's training tasks (TRAIN plus a 16-unit tanh
    MLP whose best step is large); outer learning rate 2e-3 (0.2.0's 3e-3 drifted after ~3,000
    steps, 0.3.0's 1e-3 continued a trained rule);
  * phase 2 (experiments/scaled_lopt_60_controller.py, 20 min): only the step-size controller,
    the update rule frozen (Celo's split; in 0.4.0 training everything together drifted);
  * the checkpoint that ships is picked by experiments/select_checkpoint.py on VALIDATION, which
    adds a 4x128 MLP to the 0.3.0 families: 0.4.0's all-parameter run had its best validation
    score at a checkpoint that collapsed on deep MLPs, which no validation family contained.

    timeout -s TERM 2400 metalearn meta-train --config experiments/scaled_lopt_60.py \\
        --workdir runs/scaled_lopt_60
    timeout -s TERM 1200 metalearn meta-train --config experiments/scaled_lopt_60_controller.py \\
        --workdir runs/scaled_lopt_60c
    python experiments/select_checkpoint.py runs/scaled_lopt_60c runs/scaled_lopt_60c/selected.safetensors \\
        --config experiments/scaled_lopt_60_controller.py

Measured (2026-11-28, shared 2-core CPU): phase 1 15,500 PES steps in 40 min, phase 2 7,140 steps
in 20 min, scoring 6 min. Every phase-2 checkpoint scored worse than its start, so the selection
kept phase 1's last step; on the out-of-distribution suite it reaches tuned Adam on 2/15 tasks and
diverges on 2 (`default`: 12/15, 0). Not shipped; docs/rule_quality.md, "0.5.0", has the
numbers and what drifted.
"""
import ml_collections

from scaled_lopt import VALIDATION as VALIDATION_V3
from scaled_lopt import _mlp
from scaled_lopt_v3 import get_config as v3_config
from scaled_lopt_v4 import TRAIN_V4

VALIDATION = VALIDATION_V3 + [_mlp("mnist5k_8", (128, 128, 128, 128), "relu", 64)]
VALIDATION_HORIZONS = (300, 3000)
VALIDATION_EVERY = 600


def get_config():
  c = v3_config()
  c.name = "scaled_lopt_60"
  c.init_theta = ""                  # from the rule's init, not from a shipped rule
  c.rule_kwargs = ml_collections.ConfigDict({"horizon_aware": True})
  c.task_specs = tuple(TRAIN_V4)
  c.eval_tasks = tuple(VALIDATION)
  c.outer_lr = 2e-3
  c.checkpoint_every = 150
  c.keep_checkpoints = 60
  return c
