"""Recipe of the shipped `pretrained("default")` rule: MLPLOpt meta-trained with PES.

Meta-training distribution: image MLPs (digits, mnist5k_8; width 16-128, depth 1-2, relu/tanh/gelu,
batch 32-128) horizons 100-1000 steps (log-uniform), truncations of 20.

    metalearn meta-train --config experiments/pretrained_default.py --workdir runs/pretrained_default
    python -m metalearn.optimizers.pretrained.export runs/pretrained_default default

See docs/artifacts.md for the compute used and the evaluation.
"""
import ml_collections


def get_config():
  return ml_collections.ConfigDict(dict(
      name="pretrained_default",
      rule="mlp_lopt",
      task_families=("image_mlp",),
      num_task_types=4,
      task_seed=1,
      population_per_task=8,
      truncation_length=20,
      min_horizon=100,
      max_horizon=1000,
      estimator="pes",
      es_sigma=0.01,
      outer_lr=3e-3,
      num_outer_steps=5000,
      checkpoint_every=50,
      log_every=10,
      eval_horizon=500,
  ))
