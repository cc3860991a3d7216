"""Recipe of the shipped `pretrained("default")` rule: MLPLOpt meta-trained with PES.

Meta-training distribution: image MLPs on digits (8×8), mnist5k_8 and mnist5k_14 (14×14), width
16-256 (log-uniform), depth 1-3, relu/tanh/gelu, batch 32-128; horizons 100-1000 steps
(log-uniform), truncations of 20. Not in it: 28×28 inputs, CNNs, transformers, autoencoders,
regression, depth 4, horizons beyond 1000 — the out_of_distribution suite.

    metalearn meta-train --config experiments/pretrained_default.py --workdir runs/pretrained_default

See docs/artifacts.md for the compute used and the evaluation.
"""
from _base import get_config as base_config


def get_config():
  c = base_config()
  c.name = "pretrained_default"
  c.rule = "mlp_lopt"
  c.family_kwargs = {"image_mlp": {"datasets": ["digits", "mnist5k_8", "mnist5k_14"],
                                   "widths": [16, 256], "depths": [1, 3],
                                   "batch_sizes": [32, 64, 128]}}
  c.num_task_types = 6
  c.task_seed = 15
  return c
