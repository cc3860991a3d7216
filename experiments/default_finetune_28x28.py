"""Experiment: fine-tune the 0.1 `default` rule (MLPLOpt, now `default_v1`) on 28×28 inputs too.

Why: out of distribution, `pretrained("default")` loses to tuned Adam on wide MLPs and autoencoders
whose tuned learning rate is 1e-3; its meta-training tasks (8×8 and 14×14 inputs) taught it larger
steps (docs/artifacts.md). This run warm-starts from it (`init_theta`) and meta-trains on image
MLPs that include 28×28 MNIST. With `task_seed=7` the six task types are:
mnist5k_14 76×76×76 gelu, mnist5k 120 gelu, mnist5k_14 52×52 gelu, mnist5k_14 75 gelu,
mnist5k 238×238 gelu, mnist5k 25×25×25 relu. None is an out_of_distribution suite task, but the
suite's 28×28 3×256 MLP is now near this distribution; docs/artifacts.md says so where it reports
the result.

    metalearn meta-train --config experiments/default_finetune_28x28.py --workdir runs/default_ft28
"""
from _base import get_config as base_config


def get_config():
  c = base_config()
  c.name = "default_finetune_28x28"
  c.rule = "mlp_lopt"
  c.init_theta = "pretrained:default_v1"   # the MLPLOpt default of 0.1 (`default` until 0.2.0)
  c.family_kwargs = {"image_mlp": {"datasets": ["digits", "mnist5k_8", "mnist5k_14", "mnist5k"],
                                   "widths": [16, 256], "depths": [1, 3],
                                   "batch_sizes": [32, 64, 128]}}
  c.num_task_types = 6
  c.task_seed = 7
  return c
