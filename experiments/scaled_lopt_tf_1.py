"""Stage 1 of 2 of the transformer-aware staged recipe (issue #12): the 0.2.0 recipe, a 2-layer
transformer added to the meta-training tasks, the checkpoint picked by validation.

Why. The staged replay (experiments/scaled_lopt_staged_1.py) lost both out-of-distribution
character transformers (2.91 and 2.49 against tuned Adam's 1.99 and 2.24). Scoring its
checkpoints on a 2-layer transformer validation family (``VALIDATION_TF``, not a meta-training or
out-of-distribution task) showed where: the rule's init reaches 2.28 there at 1,000 steps, and
every stage-1 checkpoint after step 900 is worse (2.75 at step 1,800), while the image MLPs and
CNNs improve. The one transformer in meta-training (1 layer, d 16) does not hold this back, and
no validation family could see it. So this recipe

  * adds a 2-layer, 2-head, d 16 transformer to the 0.2.0 meta-training tasks, and
  * scores the checkpoints on the 0.5.0 validation families plus ``VALIDATION_TF`` (at 300 and
    1,000 steps; the other families at 300 and 3,000) and starts stage 2 from the pick.

    metalearn meta-train --config experiments/scaled_lopt_tf_1.py --workdir runs/tf_1
    python experiments/select_checkpoint.py runs/tf_1 runs/tf_1/selected.safetensors \\
        --config experiments/scaled_lopt_tf_1.py
    metalearn meta-train --config experiments/scaled_lopt_tf_2.py --workdir runs/tf_2
    python experiments/select_checkpoint.py runs/tf_2 runs/tf_2/selected.safetensors \\
        --config experiments/scaled_lopt_tf_2.py
    # stage 3 (experiments/scaled_lopt_tf_3.py): the controller alone, from stage 2's last step

Measured alone on the shared 2-core CPU (2026-11-28): stage 1 680 s (pick: step 750), scoring
317 s; stage 2 571 s, scoring 329 s (no checkpoint beat its start, so the pick stays stage 1's
step 750); stage 3 987 s, scoring 361 s (no checkpoint beat its start, stage 2's step 1,500).
54.1 min in all. Out of distribution: the stage-1 pick reaches tuned Adam on 9/15 tasks (median
speedup 0.77), stage 2's last step on 9/15 (1.10, the 2-layer transformer won); `default`
12/15. Not shipped; docs/rule_quality.md, "0.7.0".
"""
from scaled_lopt import TRAIN
from scaled_lopt import get_config as v2_config
from scaled_lopt_60 import VALIDATION as VALIDATION_60

TRANSFORMER_2L = {"kind": "char_lm", "dataset": "pychars", "d_model": 16, "num_layers": 2,
                  "num_heads": 2, "seq_len": 16, "batch_size": 8}
TRAIN_TF = TRAIN + [TRANSFORMER_2L]
VALIDATION_TF = {"kind": "char_lm", "dataset": "pychars", "d_model": 24, "num_layers": 2,
                 "num_heads": 2, "seq_len": 16, "batch_size": 8}
VALIDATION = VALIDATION_60 + [VALIDATION_TF]
VALIDATION_HORIZONS = (300, 3000)
VALIDATION_HORIZONS_BY_KIND = {"char_lm": (300, 1000)}
VALIDATION_EVERY = 150


def get_config():
  c = v2_config()
  c.name = "scaled_lopt_tf_1"
  c.task_specs = tuple(TRAIN_TF)
  c.eval_tasks = tuple(VALIDATION)
  c.num_outer_steps = 1800
  c.checkpoint_every = 150
  c.keep_checkpoints = 12
  return c
