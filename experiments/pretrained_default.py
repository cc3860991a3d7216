"""Recipe of the shipped `pretrained("default")` rule: MLPLOpt meta-trained with PES.

Meta-training distribution: image MLPs on digits (8×8), mnist5k_8 and mnist5k_14 (14×14), width
16-256 (log-uniform), depth 1-3, relu/tanh/gelu, batch 32-128; horizons 100-1000 steps
(log-uniform), truncations of 20. Not in it: 28×28 inputs, CNNs, transformers, autoencoders,
regression, depth 4, horizons beyond 1000 — the out_of_distribution suite.

    metalearn meta-train --config experiments/pretrained_default.py --workdir runs/pretrained_default

See docs/artifacts.md for the compute used and the evaluation.
"""
import ml_collections


def get_config():
  return ml_collections.ConfigDict(dict(
      name="pretrained_default",
      rule="mlp_lopt",
      task_families=("image_mlp",),
      family_kwargs={"image_mlp": {"datasets": ["digits", "mnist5k_8", "mnist5k_14"],
                                   "widths": [16, 256], "depths": [1, 3],
                                   "batch_sizes": [32, 64, 128]}},
      num_task_types=6,
      task_seed=15,
      population_per_task=8,
      truncation_length=20,
      min_horizon=100,
      max_horizon=1000,
      estimator="pes",
      es_sigma=0.01,
      outer_lr=1e-3,
      num_outer_steps=3000,
      checkpoint_every=50,
      log_every=10,
      eval_horizon=500,
  ))
