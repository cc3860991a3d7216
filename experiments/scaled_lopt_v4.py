"""Recipe of the 0.4.0 `default`: the 0.3.0 `default` plus a per-tensor step adaptation, meta-trained.

What 0.3.0 lost out of distribution were tasks whose tuned Adam rate is high at short horizons
(small CNNs at 300 steps, a GRU, a 151-example table): its controller saw the loss trend and
progress but had no signal that a larger step was safe. ``ScaledLOpt(adaptive=True)`` adds one per
tensor: the sign agreement between each gradient and the momentum before it (> 0 while steps keep
going the same way, < 0 when they oscillate), integrated with a leak into a log step multiplier,

    s_k <- clip(0.98 s_k + adapt_rate * (agree_k - adapt_bias), -3, 3),   lr_k *= exp(s_k),

so a tensor's step grows up to e^3 while its gradients keep agreeing and returns towards the
meta-learned schedule when they stop (without the leak, s drifts to its bound over long horizons:
tried at 3,000 steps, docs/rule_quality.md). ``adapt_rate`` and ``adapt_bias`` are meta-parameters.

The start: the 0.3.0 `default`'s meta-parameters (``pretrained:default_v3``), with
``adapt_rate = 0.1`` and ``adapt_bias = 0``. The memory (0.98) and the starting rate were picked
among four (memory, rate) pairs by the mean log loss on the held-out VALIDATION families at 300
and 3,000 steps (the same scoring as select_checkpoint.py), not on the out-of-distribution suite.
Everything else is experiments/scaled_lopt_v3.py: the same TRAIN and VALIDATION families,
horizons 100-5000, weight-scale augmentation in [0.1, 10], PES with the sign of each antithetic
difference, outer learning rate 1e-3.

    timeout -s TERM 1800 metalearn meta-train --config experiments/scaled_lopt_v4.py \\
        --workdir runs/scaled_lopt_v4
    python experiments/select_checkpoint.py runs/scaled_lopt_v4 runs/scaled_lopt_v4/selected.safetensors \\
        --config experiments/scaled_lopt_v4.py
    python experiments/ship_rule.py runs/scaled_lopt_v4/selected.safetensors default \\
        --config experiments/scaled_lopt_v4.py --keep_previous_as default_v3 --command ... --compute ...
"""
import ml_collections

from scaled_lopt import TRAIN, VALIDATION, _mlp  # noqa: F401  (select_checkpoint reads VALIDATION)
from scaled_lopt_v3 import get_config as v3_config

# One cheap task whose best step is large: a 16-unit tanh MLP on 8x8 digits at batch 16.
TRAIN_V4 = TRAIN + [_mlp("digits", (16,), "tanh", 16)]

VALIDATION_HORIZONS = (300, 3000)
VALIDATION_EVERY = 300


def get_config():
  c = v3_config()
  c.name = "scaled_lopt_v4"
  c.rule_kwargs = ml_collections.ConfigDict(
      {"adaptive": True, "adapt_memory": 0.98, "init_adapt_rate": 0.1, "horizon_aware": True})
  c.task_specs = tuple(TRAIN_V4)
  c.init_theta = "pretrained:default_v3"   # the 0.3.0 default; the adaptation starts at its init
  c.checkpoint_every = 100
  c.keep_checkpoints = 60
  return c
